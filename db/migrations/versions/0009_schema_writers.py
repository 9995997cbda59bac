"""Which articlegen migrated the schema: `schema_writers`, a row per revision with the version
of articlegen that migrated to it, so an older articlegen meeting a newer schema can name it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A table of its own, so no other table is copied or changed (and the full-text search's
    # triggers stay as they are). `db.migrate.upgrade` writes its rows.
    op.create_table(
        "schema_writers",
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("migrated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_writers")),
    )


def downgrade() -> None:
    op.drop_table("schema_writers")
