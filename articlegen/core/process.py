"""Which process runs a job, and whether it still does.

A job records its process as (host, pid, start). The start is the boot's id, the process's pid
namespace and its start time in clock ticks since boot (Linux's `/proc`), so a pid the kernel
reused for another process, a pid of the machine's previous boot, or the same pid in another
container that shares the host's name (host networking) never passes for the job's own. On the
same host and in the same pid namespace, a run that finds the job's process gone knows at once
that the job is dead; anywhere else (or where `/proc` is missing) it cannot tell, and the job's
lease decides, as before.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["ProcessIdentity", "alive", "current", "identify"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, named well enough to tell it from any other: its host, its pid and when it
    started (None where the system does not say)."""

    host: str
    pid: int
    started: str | None


def _namespace() -> str | None:
    """This process's pid namespace, e.g. `pid:[4026531836]`: pids mean something only in it."""
    try:
        return os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return None


def _started(pid: int) -> str | None:
    """`<boot id>/<pid namespace>/<start ticks>` of process `pid` of this pid namespace, or None
    (no such process, or no `/proc`)."""
    namespace = _namespace()
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    if namespace is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": the fields after
    # the last ")" are plain, and the start time is field 22, the 20th of them.
    fields = stat.rpartition(")")[2].split()
    return f"{boot}/{namespace}/{fields[19]}" if len(fields) > 19 else None


def _parts(started: str) -> tuple[str, str]:
    """The boot and the pid namespace a start was recorded in."""
    boot, _, rest = started.partition("/")
    return boot, rest.rpartition("/")[0]


@cache
def current() -> ProcessIdentity:
    """This process."""
    pid = os.getpid()
    return ProcessIdentity(socket.gethostname(), pid, _started(pid))


def identify(pid: int) -> ProcessIdentity | None:
    """Process `pid` of this host, or None if there is none (or this system cannot say)."""
    started = _started(pid)
    return None if started is None else ProcessIdentity(current().host, pid, started)


def alive(process: ProcessIdentity) -> bool | None:
    """Whether `process` still runs: True, False, or None where this process cannot tell (it
    runs on another host, or no start time was recorded to tell a reused pid apart)."""
    here = current()
    if process.host != here.host or process.started is None or here.started is None:
        return None
    (boot, namespace), (our_boot, our_namespace) = _parts(process.started), _parts(here.started)
    if boot != our_boot:
        return False  # the machine has rebooted since: every process of then is gone
    if namespace != our_namespace:
        return None  # another container sharing the host's name: its pids are not ours
    if process.pid == here.pid:
        return process.started == here.started
    return _started(process.pid) == process.started
