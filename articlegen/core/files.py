"""Files a user hands us, checked at the edge: what they must be before we read or write them,
and how much of their content a message may quote.

A path given to read must name a regular file of bounded size. It is looked at (`os.stat`)
before it is opened, so a named pipe, which would block the reader until something writes to
it, or a device such as /dev/zero, which never ends, is refused by name instead of hanging or
filling memory; it is then opened without blocking and looked at again through the open file,
so a path swapped for a pipe in between is refused too. A path given to write is checked before
any work is done, so a run never imports its rows and then fails to write its report.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from articlegen.core.errors import ArticlegenError, InputError

__all__ = [
    "MESSAGE_QUOTE_CHARS",
    "check_input_file",
    "check_not_overwriting",
    "check_output_file",
    "quoted",
    "read_input",
]

# How much of a value a message quotes: enough to recognise the cell, never a megabyte of it.
MESSAGE_QUOTE_CHARS = 60


def quoted(value: str, limit: int = MESSAGE_QUOTE_CHARS) -> str:
    """`value` as a message shows it: its repr, cut to `limit` characters with the full length
    said ("'xxxx…'… (1,048,576 characters)"), so an oversized cell never floods stderr."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), which has no end to read up to"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(size: int) -> str:
    if size < 1 << 20:
        return f"{size:,} bytes"
    return f"{size >> 20:,} MiB" if size % (1 << 20) == 0 else f"{size / (1 << 20):,.1f} MiB"


def check_input_file(
    path: Path,
    label: str,
    max_bytes: int,
    too_large: str,
    error: type[ArticlegenError] = InputError,
) -> os.stat_result:
    """`error` unless `path` is a regular file of at most `max_bytes`, told without opening
    it. `label` names it in messages ("corpus file x.txt"); `too_large` is the fix for a file
    over the limit ("split it into several files"); `error` is `InputError` for data, and
    `ConfigError` for a settings or presets file."""
    try:
        info = path.stat()  # follows a symlink: what counts is the file it names
    except FileNotFoundError:
        raise error(f"{label} does not exist: check the path") from None
    except OSError as exc:
        raise error(f"cannot read {label}: {exc.strerror}") from None
    _check_stat(info, label, max_bytes, too_large, error)
    return info


def _check_stat(
    info: os.stat_result,
    label: str,
    max_bytes: int,
    too_large: str,
    error: type[ArticlegenError] = InputError,
) -> None:
    kind = _kind(info.st_mode)
    if kind is not None:
        raise error(f"{label} is {kind}: give the path of a regular file")
    if info.st_size > max_bytes:
        raise error(
            f"{label} is {_size(info.st_size)}, over the limit of {_size(max_bytes)}: {too_large}"
        )


def read_input(path: Path, label: str, max_bytes: int, too_large: str) -> bytes:
    """The bytes of `path`, after `check_input_file`; the open file is checked again (a path
    replaced by a pipe or a larger file in between), and no more than `max_bytes` are read."""
    check_input_file(path, label, max_bytes, too_large)
    try:
        # O_NONBLOCK: opening a pipe that took the file's place returns at once, for the check
        # below to refuse, instead of waiting for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"cannot read {label}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        _check_stat(os.fstat(descriptor), label, max_bytes, too_large)
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"cannot read {label}: {exc.strerror}") from None
    if len(data) > max_bytes:  # it grew after the check
        raise InputError(f"{label} is over the limit of {_size(max_bytes)}: {too_large}")
    return data


def check_not_overwriting(
    path: Path, label: str, inputs: tuple[Path, ...] = (), database: tuple[Path, ...] = ()
) -> None:
    """`InputError` if `path` is one of `inputs` or of the `database`'s files, under any
    spelling or through a symlink: writing it would destroy what a command reads or keeps."""
    named = [(s, "the input file", "overwrite the input") for s in inputs] + [
        (s, "a file of the database", "destroy the database") for s in database
    ]
    for source, what, harm in named:
        same = os.path.realpath(path) == os.path.realpath(source)
        with contextlib.suppress(OSError):  # a path that can't be looked at is not the input
            same = same or (path.exists() and source.exists() and path.samefile(source))
        if same:
            raise InputError(
                f"{label} {path} is {what} {source}: writing it would {harm}; choose another path"
            )


def check_output_file(
    path: Path, label: str, inputs: tuple[Path, ...] = (), database: tuple[Path, ...] = ()
) -> None:
    """`InputError` unless a file can be written at `path`: not a directory, not one of
    `inputs` nor of the `database`'s files (`check_not_overwriting`), in a directory that
    exists and that we may write to. Asked before any work, so nothing is done that can't be
    reported."""
    check_not_overwriting(path, label, inputs, database)
    target = Path(os.path.realpath(path))
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):  # told below, by the parent
        info = None
    except OSError as exc:
        raise InputError(f"cannot write {label} {path}: {exc.strerror}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise InputError(
                f"{label} {path} is a directory: give the path of a file to write (in it, or "
                "elsewhere)"
            )
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{label} {path} is {_kind(info.st_mode)}: give a regular file")
        if not os.access(target, os.W_OK):
            raise InputError(f"cannot write {label} {path}: permission denied; choose another")
        return
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise InputError(
            f"cannot write {label} {path}: {path.parent} {what}; create the directory or "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot write {label} {path}: directory {path.parent} is not writable; choose "
            "another path"
        )
