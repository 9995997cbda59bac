"""Prefect as a local tool: no telemetry, servers on loopback, a quiet terminal."""

from __future__ import annotations

import os

__all__ = ["quiet_prefect"]


def quiet_prefect(log_level: str = "CRITICAL") -> None:
    """Set Prefect's environment before it is imported; anything the user set wins.

    `log_level` is the terminal's: interactive commands show CRITICAL only, so errors reach the
    user once, as `Error: ...` from the CLI, where Prefect's engine would first log each with a
    traceback. The level of Prefect's loggers stays INFO, so a run's log lines (one per batch)
    still reach the server and its UI.
    """
    for name, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": log_level,
        # The temporary server's first start on a new PREFECT_HOME migrates its database; on
        # two busy cores that can pass Prefect's 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }.items():
        os.environ.setdefault(name, value)
