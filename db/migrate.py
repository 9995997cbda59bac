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
from sqlalchemy import Connection, Engine, create_engine, delete, insert, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from articlegen import __version__
from articlegen.core.errors import DatabaseError
from articlegen.db.backends import WRITE, driver_message, safe_url
from articlegen.db.models import SchemaWriter

__all__ = ["current_revision", "head_revision", "new_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# Key for pg_advisory_xact_lock: any constant shared by every articlegen process.
_PG_MIGRATION_LOCK = 0x61727469636C65  # "article"
_WRITERS = SchemaWriter.__tablename__


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
    """Bring the schema to `revision`; a no-op when it is there already.

    Raises `DatabaseError` before changing anything when the database is not one articlegen
    may migrate: its schema is newer than this articlegen knows, or (SQLite) it holds another
    application's tables.
    """
    try:
        if revision == "head" and current_revision(engine) == head_revision():
            return
        _check_ours(engine)
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
                    _record_writer(connection)
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


def _check_ours(engine: Engine) -> None:
    """`DatabaseError` if the database is at a revision we don't know, or is another
    application's SQLite file; nothing is written either way."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        tables = set(inspect(connection).get_table_names())
        writer = None
        if current is not None and _WRITERS in tables:
            writer = connection.execute(
                select(SchemaWriter.version).where(SchemaWriter.revision == current)
            ).scalar_one_or_none()
    where = safe_url(engine.url)
    if current is not None and current not in _known_revisions():
        if writer is None and not {"prompts", "articles"} <= tables:
            raise DatabaseError(
                f"database {where} has schema revision {current}, which is not articlegen's: "
                "it belongs to another application. Point ARTICLEGEN_DATABASE_URL at an "
                "articlegen database, or at a new one"
            )
        by, to = (
            (f"articlegen {writer}", f" to {writer} or later")
            if writer
            else ("a newer articlegen", "")
        )
        raise DatabaseError(
            f"database {where} has schema revision {current}, written by {by}; this is "
            f"articlegen {__version__}, which knows revisions up to {head_revision()}. Upgrade "
            f"articlegen{to}, or point ARTICLEGEN_DATABASE_URL at another database"
        )
    if current is None and engine.dialect.name == "sqlite" and tables:
        # Our tables would be added beside another application's, and its file changed.
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatabaseError(
            f"database {where} already holds tables that are not articlegen's ({shown}): it "
            "belongs to another application, and articlegen adds no tables to it. Point "
            "ARTICLEGEN_DATABASE_URL at an articlegen database, or at a file that does not "
            "exist yet"
        )


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def _record_writer(connection: Connection) -> None:
    """Note that this articlegen migrated the schema to where it now is (from revision 0009,
    which made the table, on)."""
    now = MigrationContext.configure(connection).get_current_revision()
    if now is None or not inspect(connection).has_table(_WRITERS):
        return
    connection.execute(delete(SchemaWriter).where(SchemaWriter.revision == now))
    connection.execute(insert(SchemaWriter).values(revision=now, version=__version__))


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
