"""The event an import announces: `articlegen.prompts.imported`, for Prefect to react to.

`articlegen serve` registers a trigger on it, so new prompts start a run. This module only says
what the event is; the CLI and the import flow send it (nothing here imports Prefect). The event
names the database by its identity, never by its URL: a URL may carry a password, or one in its
query (`?password=`, `sslpassword`), and events are stored and shown in the Prefect UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from articlegen.db import Database, PromptStatus
from articlegen.db.prompts import count_prompts
from articlegen.importing.prompts_csv import ImportReport

__all__ = ["PROMPTS_IMPORTED", "ImportEvent", "database_identity", "import_event", "resource_id"]

PROMPTS_IMPORTED = "articlegen.prompts.imported"


@dataclass(frozen=True)
class ImportEvent:
    """One `articlegen.prompts.imported` event, as `prefect.events.emit_event` takes it."""

    resource: dict[str, str]
    payload: dict[str, Any]
    event: str = PROMPTS_IMPORTED


def database_identity(url: str | URL) -> str:
    """Which database `url` is, without user, password or query: `sqlite:/abs/path.db`,
    `postgresql://host:5432/name`.

    A SQLite path is made absolute, so the CLI in one directory and `serve` started with the
    same URL from that directory name the same file alike.
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return "unparseable"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return "sqlite:memory"  # a process's own database: no other process shares it
        return f"sqlite:{Path(parsed.database).resolve().as_posix()}"
    # The default port written out, so `h/db` and `h:5432/db` name one database.
    port_number = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(backend)
    port = f":{port_number}" if port_number is not None else ""
    return f"{backend}://{parsed.host or ''}{port}/{parsed.database or ''}"


def resource_id(url: str | URL) -> str:
    """The event's resource: the prompts of the database at `url` (a trigger matches on it)."""
    return f"articlegen.prompts.{database_identity(url)}"


def import_event(database: Database, report: ImportReport) -> ImportEvent | None:
    """The event for an import that wrote prompts; None for a dry run or one that changed
    nothing, which must not start a run."""
    if report.dry_run or report.inserted + report.updated == 0:
        return None
    with database.session(write=False) as session:
        pending = count_prompts(session)[PromptStatus.PENDING]
    return ImportEvent(
        resource={
            "prefect.resource.id": resource_id(database.engine.url),
            "prefect.resource.name": "articlegen prompts",
        },
        payload={
            "file": str(report.path.resolve()),
            "inserted": report.inserted,
            "updated": report.updated,
            "pending": pending,
        },
    )
