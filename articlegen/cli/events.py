"""`articlegen import` announces what it wrote to the Prefect server, when there is one.

The event (`articlegen.importing.events`) is what `articlegen serve`'s trigger waits for. Most
imports run without a server: then nothing is sent and Prefect is not even imported, because
that takes most of a second, and Prefect without an API URL would start a temporary server of
its own for an event nobody listens to. When the server is down the import still succeeds (its
prompts are committed before anything is sent) and the user gets one line saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from articlegen.cli.prefect_env import quiet_prefect
from articlegen.core.redact import redact_urls
from articlegen.db import Database
from articlegen.importing import PROMPTS_IMPORTED, ImportEvent, ImportReport, import_event

__all__ = ["announce_import", "prefect_api_configured"]

# Bounds the wait for a server that accepts connections and never answers; a refused
# connection fails at once.
SEND_TIMEOUT_S = 5.0


def prefect_api_configured() -> bool:
    """Whether Prefect has an API URL to send events to.

    Prefect reads it from the environment, the active profile, `.env`, `prefect.toml` or
    `pyproject.toml`; a look at whether any of those could hold one comes first, so the common
    case, none, never imports Prefect. Where one could, Prefect itself decides.
    """
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    candidates = {
        profiles: "PREFECT_API_URL",
        Path(".env"): "PREFECT_API_URL",
        Path("prefect.toml"): "api",
        Path("pyproject.toml"): "tool.prefect",
    }
    if not any(_mentions(path, text) for path, text in candidates.items()):
        return False
    quiet_prefect()
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _mentions(path: Path, text: str) -> bool:
    try:
        return text in path.expanduser().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def announce_import(database: Database, report: ImportReport) -> str | None:
    """Send the import's event to the Prefect server, if one is configured and the import
    wrote prompts. Returns a one-line warning when the server did not take it, else None."""
    url = redact_urls(os.environ.get("PREFECT_API_URL", "the configured Prefect API"))
    # Whatever goes wrong from here on, the import itself stands: its prompts are committed.
    try:
        if not prefect_api_configured():
            return None
        event = import_event(database, report)
        if event is None:
            return None
        quiet_prefect()
        from prefect.settings import get_current_settings

        url = redact_urls(str(get_current_settings().api.url))
        _send_now(event)
    except Exception as exc:
        text = str(exc).strip()
        # The error's text may quote the URL it failed on, credentials and all.
        reason = redact_urls(text.splitlines()[0][:200]) if text else type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer in {SEND_TIMEOUT_S:g} s"
        return (
            f"the prompts are imported, but the Prefect server at {url} did not get the "
            f"{PROMPTS_IMPORTED} event ({reason}), so no run starts now; a scheduled run will take "
            "them, or start one with `articlegen generate`"
        )
    return None


def _send_now(event: ImportEvent) -> None:
    """Send `event` and wait for the server to confirm it, at most SEND_TIMEOUT_S.

    In a thread of its own: the caller may already run an event loop (a notebook, a test), and
    asyncio.run refuses to start a second one in the same thread."""

    async def within_timeout() -> None:
        await asyncio.wait_for(_send(event), SEND_TIMEOUT_S)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(within_timeout())).result()


async def _send(event: ImportEvent) -> None:
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Event

    # The client logs its own warning when it can't connect, a long line this command doesn't
    # configure logging for; the caller's one line says it, with what happens next.
    client_log = logging.getLogger("prefect.events.clients")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        # One attempt, and a ping after the event, so a server that took it has confirmed it
        # before this short-lived process exits.
        async with get_events_client(reconnection_attempts=0, checkpoint_every=1) as client:
            await client.emit(
                Event(event=event.event, resource=event.resource, payload=event.payload)
            )
    finally:
        client_log.setLevel(level)
