"""What differs between SQLite and PostgreSQL, and how a database URL is read and shown.

The bottom of `db`: `session` (which opens databases) and `migrate` (which upgrades them) both
build on it, so neither needs the other's internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, cast, event, func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import Text

from articlegen.core.errors import DatabaseError
from articlegen.core.redact import safe_database_url

__all__ = [
    "SQLITE_BEGIN",
    "WRITE",
    "configure_sqlite",
    "driver_message",
    "json_has_any",
    "parse_url",
    "safe_url",
]

# The execution option naming how SQLite transactions begin. Writers pass WRITE, so they take
# the write lock up front (see `configure_sqlite`).
SQLITE_BEGIN = "articlegen_sqlite_begin"
WRITE = {SQLITE_BEGIN: "IMMEDIATE"}


def parse_url(url: str) -> URL:
    """`url` parsed, with psycopg 3 as the PostgreSQL driver; `DatabaseError` if it is none."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # The text is not shown: it may hold a password.
        raise DatabaseError(
            "the database URL (ARTICLEGEN_DATABASE_URL, or database_url in articlegen.toml) is "
            "not a database URL; use e.g. sqlite:///articlegen.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2, which we don't ship.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ***, fit for messages and logs."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    return safe_database_url(url)


def driver_message(exc: SQLAlchemyError) -> str:
    """The driver's own first line, without SQLAlchemy's "(Background on this error...)"."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that begin when we say so."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite opens transactions late and never for DDL; take control of BEGIN ourselves
        # (the recipe in SQLAlchemy's SQLite docs) so every transaction, migrations included,
        # is real and atomic.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        # WAL lets readers (the review CLI) work while a run writes. In-memory databases
        # answer "memory" and carry on.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers begin IMMEDIATE: they take the write lock up front, so one that must wait
        # for another waits (busy_timeout) instead of failing at once with "database is
        # locked" when its read turns into a write. Readers begin DEFERRED and, under WAL,
        # never wait.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def json_has_any(
    dialect: str, column: ColumnElement[Any] | InstrumentedAttribute[Any], values: Sequence[str]
) -> ColumnElement[bool]:
    """Whether the JSON array of strings in `column` holds at least one of `values`, in SQL."""
    wanted = sorted(set(values))
    if dialect == "postgresql":
        # JSONB's `?|`: does the array hold any of these strings (a GIN index can serve it).
        has_any: ColumnElement[bool] = cast(column, JSONB).has_any(cast(array(wanted), ARRAY(Text)))
        return has_any
    # SQLite: json_each parses every row's array, slow over 100,000 rows; a LIKE on the JSON
    # text as SQLAlchemy writes it (each string quoted and escaped by json.dumps) first keeps
    # only the rows that may hold one. LIKE ignores ASCII case, so it never drops a match;
    # json_each then decides exactly.
    as_text = type_coerce(column, Text)  # the stored JSON text, no CAST in the SQL
    maybe = or_(*(as_text.contains(json.dumps(v), autoescape=True) for v in wanted))
    element = func.json_each(column).table_valued("value")
    exact = select(1).select_from(element).where(element.c.value.in_(wanted)).exists()
    return and_(maybe, exact)
