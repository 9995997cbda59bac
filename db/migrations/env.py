"""Alembic environment: runs on the connection handed over by `db.migrate`, online only."""

from __future__ import annotations

from alembic import context

from articlegen.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `articlegen db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite can't ALTER most things in place; batch mode copies the table instead.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
