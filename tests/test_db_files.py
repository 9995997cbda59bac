"""Databases articlegen did not make, or a newer articlegen did: each is refused with what it
is and what to do, and left exactly as it was. The record that lets an older articlegen name
the newer one that wrote a schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text

from articlegen import __version__
from articlegen.core.errors import DatabaseError
from articlegen.db import Database
from articlegen.db.migrate import head_revision
from articlegen.db.models import SchemaWriter


def test_each_migration_records_which_articlegen_made_it(database: Database) -> None:
    with database.session(write=False) as session:
        rows = session.execute(select(SchemaWriter.revision, SchemaWriter.version)).all()
    assert rows == [(head_revision(), __version__)]


@pytest.mark.parametrize(
    ("writer", "by", "to"),
    [("9.9.0", "articlegen 9.9.0", " to 9.9.0 or later"), (None, "a newer articlegen", "")],
)
def test_a_schema_newer_than_this_articlegen_is_refused_naming_its_writer(
    database_url: str, writer: str | None, by: str, to: str
) -> None:
    db = Database.open(database_url)
    with db.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0042'"))
        if writer is not None:
            session.add(SchemaWriter(revision="0042", version=writer))
    url = db.url
    db.close()
    with pytest.raises(DatabaseError) as refused:
        Database.open(database_url)
    assert str(refused.value) == (
        f"database {url} has schema revision 0042, written by {by}; this is articlegen "
        f"{__version__}, which knows revisions up to {head_revision()}. Upgrade articlegen{to}, "
        "or point ARTICLEGEN_DATABASE_URL at another database"
    )


def _foreign_sqlite(path: Path, alembic: bool) -> bytes:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO customers (name) VALUES ('Ada')")
    if alembic:  # another application that also uses Alembic
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('a1b2c3d4')")
    connection.commit()
    connection.close()
    return path.read_bytes()


@pytest.mark.parametrize("alembic", [False, True], ids=["plain", "with-alembic"])
def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(
    tmp_path: Path, alembic: bool
) -> None:
    path = tmp_path / "shop.db"
    before = _foreign_sqlite(path, alembic)
    with pytest.raises(DatabaseError) as refused:
        Database.open(f"sqlite:///{path}")
    fix = "Point ARTICLEGEN_DATABASE_URL at an articlegen database"
    if alembic:
        assert str(refused.value) == (
            f"database sqlite:///{path} has schema revision a1b2c3d4, which is not "
            f"articlegen's: it belongs to another application. {fix}, or at a new one"
        )
    else:
        assert str(refused.value) == (
            f"database sqlite:///{path} already holds tables that are not articlegen's "
            "(customers): it belongs to another application, and articlegen adds no tables "
            f"to it. {fix}, or at a file that does not exist yet"
        )
    # Not a table added, nor the journal mode changed (WAL is kept in the file).
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]
