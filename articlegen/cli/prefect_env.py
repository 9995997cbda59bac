"""Prefect as a local tool: no telemetry, servers on loopback, a quiet terminal; and a server
of the user's checked before a command relies on it."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from articlegen.core.errors import ConfigError
from articlegen.core.redact import redact_urls

__all__ = ["check_prefect_api", "quiet_prefect"]

# How long the check waits for the server's answer. A closed port is refused at once; this
# bounds a host that drops packets, or a server that accepts and never answers.
HEALTH_TIMEOUT_S = 5.0


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


def _check_url_form(url: str) -> None:
    """`ConfigError` unless `url` is an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises for a port that is not one)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"PREFECT_API_URL {redact_urls(url)} is not a URL Prefect can use: correct it (e.g. "
            "http://127.0.0.1:4200/api), or unset it so the run starts a temporary local server "
            "of its own. Nothing was started"
        )


def check_prefect_api() -> None:
    """`ConfigError` naming the Prefect API and the fix when one is configured and does not
    answer its health check; nothing when it answers, or when none is configured (a run then
    starts a temporary local server).

    Called before a command writes anything: a run against a server that is down would
    otherwise leave its job row `queued`, and fail minutes later in Prefect's retries.
    """
    raw = os.environ.get("PREFECT_API_URL")
    if raw:
        # Looked at before Prefect is imported: Prefect reads the variable as it loads, and
        # prints its own complaint about a malformed one, a traceback's worth, first.
        _check_url_form(raw)
    quiet_prefect()
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        get_current_settings,
        temporary_settings,
    )

    # The variable first: a process's own environment is what its user set for this command.
    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    if not url:
        return
    # One try, the URL named here: the answer is for the server the message names.
    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: url, PREFECT_CLIENT_MAX_RETRIES: 0}),
            get_client(httpx_settings={"timeout": HEALTH_TIMEOUT_S}, sync_client=True) as client,
        ):
            failure = client.api_healthcheck()
    except ValueError as exc:  # pydantic's and httpx's: a URL that is not one
        raise ConfigError(
            f"PREFECT_API_URL {redact_urls(url)} is not a URL Prefect can use: correct it (e.g. "
            "http://127.0.0.1:4200/api), or unset it so the run starts a temporary local server "
            f"of its own. Nothing was started ({type(exc).__name__})"
        ) from None
    if failure is None:
        return
    text = str(failure).strip()
    reason = text.splitlines()[0][:200] if text else type(failure).__name__
    raise ConfigError(
        f"the Prefect API at {redact_urls(url)} does not answer ({redact_urls(reason)}): start "
        "the server (`prefect server start`), correct PREFECT_API_URL, or unset it so the run "
        "starts a temporary local server of its own. Nothing was started"
    )
