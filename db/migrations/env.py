"""Alembic environment: runs on the connection handed over by `db.migrate`, online only."""

from __future__ import annotations

from alembic import context

from articlegen.db.models import Base
from articlegen.db.search import ignore_search_objects

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `articlegen db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite can't ALTER most things in place; batch mode copies the table instead.
    render_as_batch=True,
    # The full-text search's tables, triggers and indexes are the migrations' own, not models.
    include_name=ignore_search_objects,
)
with context.begin_transaction():
    context.run_migrations()
