"""Schema migrations with Alembic, driven from code: no alembic.ini to find or keep in sync.

`upgrade(engine)` is cheap when the schema is current (one query), so every command calls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from articlegen.core.errors import DatabaseError
from articlegen.db.backends import WRITE, driver_message, safe_url

__all__ = ["current_revision", "head_revision", "new_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# Key for pg_advisory_xact_lock: any constant shared by every articlegen process.
_PG_MIGRATION_LOCK = 0x61727469636C65  # "article"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "db/migrations has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is there already."""
    try:
        if revision == "head" and current_revision(engine) == head_revision():
            return
        with engine.execution_options(**WRITE).connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite migrations may copy a table and drop the original; with foreign keys
                # on, that drop cascades into every referencing row (articles). The pragma
                # only takes effect outside a transaction, so it goes to the raw connection.
                _raw(connection).execute("PRAGMA foreign_keys = OFF")
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        # Two workers starting at once on a new database must not both
                        # create tables.
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _PG_MIGRATION_LOCK},
                        )
                    command.upgrade(_config(connection), revision)
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise DatabaseError(
                                f"migration to {revision} would break {len(broken)} foreign "
                                "key(s); nothing was changed"
                            )
            finally:
                if sqlite:
                    _raw(connection).execute("PRAGMA foreign_keys = ON")
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"could not migrate database {safe_url(engine.url)} to {revision}: "
            f"{driver_message(exc)}"
        ) from exc


def _raw(connection: Connection) -> Any:
    return connection.connection.dbapi_connection


def new_revision(message: str) -> None:
    """Write a migration for what `db/models/` has and the migrations lack (`make migration`).

    Autogenerate compares the models with an in-memory database at head; review its output
    before committing, as Alembic asks.
    """
    with create_engine("sqlite://").connect() as connection:
        command.upgrade(_config(connection), "head")
        command.revision(_config(connection), message=message, autogenerate=True)
