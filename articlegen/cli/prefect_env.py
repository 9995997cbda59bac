"""Prefect as a local tool: no telemetry, servers on loopback, a quiet terminal."""

from __future__ import annotations

import os

__all__ = ["interrupted", "quiet_prefect"]


def quiet_prefect(log_level: str = "CRITICAL") -> None:
    """Set Prefect's environment before it is imported; anything the user set wins.

    `log_level` is the level of Prefect's terminal handler: interactive commands show CRITICAL
    only, so errors reach the user once, as `Error: ...` from the CLI, where Prefect's engine
    would first log each with a traceback. Prefect's loggers keep INFO, so a run's lines (one
    per batch, the final state) still reach the server and its UI. articlegen's own warnings
    have their own handler (`cli.base.main`), which this leaves alone.
    """
    for name, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": log_level,
        # Without a server of the user's, runs go to a temporary one that ends with the command:
        # nobody reads logs there, and a Ctrl-C, which stops it first, left "Error logging to
        # API" on the terminal.
        **(
            {} if os.environ.get("PREFECT_API_URL") else {"PREFECT_LOGGING_TO_API_ENABLED": "false"}
        ),
        # The temporary server's first start on a new PREFECT_HOME migrates its database; on
        # two busy cores that can pass Prefect's 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }.items():
        os.environ.setdefault(name, value)


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C or came of it. A terminal's Ctrl-C reaches the whole process
    group, Prefect's temporary server included: the engine, recording the interrupted run,
    then fails to reach the server, and that error carries the interrupt as its context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
