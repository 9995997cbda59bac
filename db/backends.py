"""What differs between SQLite and PostgreSQL, and how a database URL is read and shown.

The bottom of `db`: `session` (which opens databases) and `migrate` (which upgrades them) both
build on it, so neither needs the other's internals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, cast, event, func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import Text
from sqlalchemy.util import asbool

from articlegen.core.errors import DatabaseError
from articlegen.core.redact import redact_urls, safe_database_url

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


# Where a database URL is set, for messages that cannot show the URL itself.
_WHERE = "ARTICLEGEN_DATABASE_URL, or database_url in articlegen.toml"
_EXAMPLES = "e.g. sqlite:///articlegen.db or postgresql://user@host:5432/dbname"
# The drivers articlegen ships and is tested with, per backend: SQLAlchemy's default for
# SQLite, psycopg 3 for PostgreSQL (whose SQLAlchemy default, psycopg2, we don't ship).
_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
# What a SQLite URL's query may say: pysqlite's own arguments (as SQLAlchemy's dialect reads
# them), and with uri=true SQLite's URI parameters. Anything else SQLAlchemy drops with a
# warning, so an option the user thinks is in force would not be.
_SQLITE_OPTIONS = {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread",
                   "cached_statements"}  # fmt: skip
_SQLITE_URI_OPTIONS = {"vfs", "mode", "cache", "psow", "nolock", "immutable", "modeof"}


def parse_url(url: str) -> URL:
    """`url` parsed and checked, with psycopg 3 as the PostgreSQL driver; `DatabaseError`
    naming what is wrong (and never the password) if it cannot be used.

    Checked without connecting: the form, the port, the backend and driver, and the names of
    the query's options.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        # The text is not shown: it may hold a password.
        why = "its port is not a number" if isinstance(exc, ValueError) else "it is not one"
        raise DatabaseError(
            f"the database URL ({_WHERE}) is not a database URL: {why}; use {_EXAMPLES}"
        ) from None
    if parsed.host is not None and "@" in parsed.host:
        # `user:p@ss@host`: the URL's password ends at its first @, so the rest of the password
        # would be taken for the host, and shown as it.
        raise DatabaseError(
            f"the database URL ({_WHERE}) has an @ in its password: write it as %40 "
            "(postgresql://user:p%40ss@host/dbname), or set the password in PGPASSWORD"
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # From the name itself: asking SQLAlchemy for the driver loads the dialect, and fails
    # with its own words on a backend we don't know.
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise DatabaseError(
            f"database {safe_url(parsed)}: articlegen runs on SQLite and PostgreSQL, not "
            f"{backend}; use {_EXAMPLES}"
        )
    elif driver and driver != _DRIVERS[backend]:
        raise DatabaseError(
            f"database {safe_url(parsed)}: articlegen talks to {backend} through "
            f"{_DRIVERS[backend]}, not {driver}: remove `+{driver}` from the URL"
        )
    if backend == "sqlite" and (parsed.host or parsed.username or parsed.port):
        raise DatabaseError(
            f"database {safe_url(parsed)}: a SQLite URL names a file, not a host: write "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise DatabaseError(
            f"database {safe_url(parsed)}: port {parsed.port} is not a port (1 to 65535); "
            "PostgreSQL listens on 5432 unless told otherwise"
        )
    unknown = _unknown_options(parsed)
    if unknown:
        raise DatabaseError(
            f"database {safe_url(parsed)}: unknown option(s) {', '.join(unknown)} in its "
            f"query; remove them ({backend} takes {_option_hint(parsed)})"
        )
    if backend == "sqlite":
        _check_sqlite_values(parsed)
    return parsed


def _check_sqlite_values(parsed: URL) -> None:
    # Read as SQLAlchemy's pysqlite dialect reads them, which raises a bare ValueError.
    readers: tuple[tuple[str, Callable[[str], object], str], ...] = (
        ("timeout", float, "a number of seconds"),
        ("detect_types", int, "a whole number"),
        ("cached_statements", int, "a whole number"),
        ("uri", asbool, "true or false"),
        ("check_same_thread", asbool, "true or false"),
    )
    for name, read, want in readers:
        value = parsed.query.get(name)
        try:
            if isinstance(value, tuple):  # given twice: which one holds?
                raise ValueError(value)
            if value is not None:
                read(value)
        except ValueError:
            raise DatabaseError(
                f"database {safe_url(parsed)}: option {name} must be {want}, got {value!r}"
            ) from None


def _unknown_options(parsed: URL) -> list[str]:
    names = sorted(parsed.query)
    if parsed.get_backend_name() == "sqlite":
        known = set(_SQLITE_OPTIONS)
        if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
            known |= _SQLITE_URI_OPTIONS
        return [n for n in names if n not in known]
    # libpq's own list of connection options, as psycopg reads them: no connection made.
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    unknown = []
    for name in names:
        try:
            make_conninfo("", **{name: "x"})
        except ProgrammingError:
            unknown.append(name)
    return unknown


def _option_hint(parsed: URL) -> str:
    if parsed.get_backend_name() == "sqlite":
        return ", ".join(sorted(_SQLITE_OPTIONS)) + " and, with uri=true, SQLite's URI options"
    return "libpq's connection options, such as sslmode, connect_timeout, application_name"


def safe_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ***, fit for messages and logs."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    return safe_database_url(url)


def driver_message(exc: SQLAlchemyError) -> str:
    """The driver's own first line, without SQLAlchemy's "(Background on this error...)",
    and without the secrets of any URL it quotes."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return redact_urls(text.splitlines()[0]) if text else type(exc).__name__


_SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


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
        # answer "memory" and carry on. Only in a new database or one of ours: the mode is
        # kept in the file, and another application's file (which `migrate` refuses) must
        # leave as it came. A file that is not SQLite's fails here, on its first read.
        tables = {row[0] for row in cursor.execute(_SQLITE_TABLES)}
        if not tables or "prompts" in tables:
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
