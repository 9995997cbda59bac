"""The engine and the session factory, and the one place database URLs are interpreted.

`Database.open(url)` connects, brings the schema to the newest migration when it is behind (so a
first run needs no setup step), and hands out sessions. SQLite gets WAL, foreign keys and real
transactions; PostgreSQL URLs without a driver get psycopg 3, which ships with articlegen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from articlegen.errors import DatabaseError

__all__ = ["Database", "safe_url"]

# How long a SQLite writer waits for another one before "database is locked".
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"ARTICLEGEN_DATABASE_URL is not a database URL: {url!r}; use e.g. "
            "sqlite:///articlegen.db or postgresql://user@host:5432/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2, which we don't ship.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ***, fit for messages and logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite opens transactions late and never for DDL; take control of BEGIN ourselves
        # (the recipe in SQLAlchemy's SQLite docs) so every transaction, migrations included,
        # is real and atomic.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers (the review CLI) work while a run writes. In-memory databases
        # answer "memory" and carry on.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


class Database:
    """An open application database: an engine, a session factory and a migrated schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect to `url`; with `migrate`, upgrade the schema to the newest revision first."""
        parsed = _parse_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            # One connection for the whole process, or every new connection sees an empty db.
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(f"cannot use database {safe_url(parsed)}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        database = cls(engine)
        try:
            with engine.connect():
                pass
        except OperationalError as exc:
            engine.dispose()
            fix = (
                "Check that its directory exists and is writable"
                if engine.dialect.name == "sqlite"
                else "Check that the server is running and ARTICLEGEN_DATABASE_URL is right"
            )
            raise DatabaseError(
                f"cannot connect to database {safe_url(parsed)}: {_first_line(exc)}. {fix}"
            ) from None
        if migrate:
            from db.migrate import upgrade

            upgrade(engine)
        return database

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return safe_url(self.engine.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def _first_line(exc: SQLAlchemyError) -> str:
    # The driver's message without SQLAlchemy's trailing "(Background on this error...)" lines.
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
