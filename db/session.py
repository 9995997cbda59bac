"""The engine and the session factory, and the one place database URLs are interpreted.

`Database.open(url)` connects, brings the schema to the newest migration when it is behind (so a
first run needs no setup step), and hands out sessions. SQLite gets WAL, foreign keys and real
transactions; PostgreSQL URLs without a driver get psycopg 3, which ships with articlegen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from articlegen.core.errors import DatabaseError
from articlegen.core.redact import redact_urls
from articlegen.db.backends import WRITE, configure_sqlite, driver_message, parse_url, safe_url
from articlegen.db.migrate import upgrade

__all__ = ["Database", "in_chunks"]

# How long a SQLite writer waits for another one before "database is locked", unless the URL
# says otherwise with pysqlite's own parameter (sqlite:///a.db?timeout=5, in seconds).
_SQLITE_BUSY_TIMEOUT_S = 30.0

# Values per IN (...) query: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500

T = TypeVar("T")


def in_chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in slices small enough for one `IN (...)` list on every backend."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _cannot_open(url: URL, exc: DBAPIError) -> DatabaseError:
    """Why the first connection failed, and what to do."""
    if url.get_backend_name() != "sqlite":
        return DatabaseError(
            f"cannot connect to database {safe_url(url)}: {driver_message(exc)}. Check that "
            "the server is running and ARTICLEGEN_DATABASE_URL is right"
        )
    if not isinstance(exc, OperationalError):
        # sqlite3.DatabaseError: a file that is not SQLite's (a text file, an image), or
        # one whose pages are damaged. SQLite says which when it reads the file.
        return DatabaseError(
            f"database {safe_url(url)}: the file {url.database} is not a SQLite database "
            f"({driver_message(exc)}). Point ARTICLEGEN_DATABASE_URL at an articlegen "
            "database, or at a file that does not exist yet to start a new one"
        )
    return DatabaseError(
        f"cannot connect to database {safe_url(url)}: {driver_message(exc)}. Check that its "
        "directory exists and is writable"
    )


class Database:
    """An open application database: an engine, a session factory and a migrated schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The files that hold the database (a SQLite file and its journals): no command may
        # write an output over them.
        name = engine.url.database if engine.dialect.name == "sqlite" else None
        self.files: tuple[Path, ...] = (
            tuple(Path(name + suffix) for suffix in ("", "-wal", "-shm", "-journal"))
            if name and name != ":memory:"
            else ()
        )
        self._writes = sessionmaker(engine.execution_options(**WRITE), expire_on_commit=False)
        self._reads = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect to `url`; with `migrate`, upgrade the schema to the newest revision first."""
        parsed = parse_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            # One connection for the whole process, or every new connection sees an empty db.
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(
                f"cannot use database {safe_url(parsed)}: {redact_urls(str(exc))}"
            ) from exc
        if engine.dialect.name == "sqlite":
            timeout = parsed.query.get("timeout")  # a number: `parse_url` checked it
            busy = float(timeout) if isinstance(timeout, str) else _SQLITE_BUSY_TIMEOUT_S
            configure_sqlite(engine, busy)
        database = cls(engine)
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            engine.dispose()
            raise _cannot_open(parsed, exc) from None
        if migrate:
            try:
                upgrade(engine)
            except DatabaseError:
                engine.dispose()  # a refused database keeps no connection open
                raise
        return database

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return safe_url(self.engine.url)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        `write=False` for sessions that only read: on SQLite they never wait for writers.
        A lost connection or a lock held too long becomes a `DatabaseError`; constraint
        violations stay `IntegrityError` for the caller to interpret.
        """
        factory = self._writes if write else self._reads
        try:
            with factory() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise DatabaseError(
                f"database {self.url}: {driver_message(exc)}. Nothing of this operation was "
                "written; try again, and check that no other process holds the database"
            ) from exc

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()
