"""Shared work queue: each job's process (`host`, `pid`, `process_started`), so a run on the same
host can tell at once that a job's process is gone; each prompt's `errors`, its failure history

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS: list[tuple[str, sa.Column[Any]]] = [
    ("jobs", sa.Column("host", sa.String(length=255), nullable=True)),
    ("jobs", sa.Column("pid", sa.Integer(), nullable=True)),
    ("jobs", sa.Column("process_started", sa.String(length=100), nullable=True)),
    (
        "prompts",
        sa.Column(
            "errors",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
            server_default=sa.text("'[]'"),
        ),
    ),
]


def upgrade() -> None:
    # Plain nullable columns, as in 0007: SQLite adds them in place, leaving the search's
    # triggers alone. A job from before has no process on record: the lease alone decides it;
    # a prompt from before has no failure history (its last error stays in `last_error`).
    for table, column in _COLUMNS:
        op.add_column(table, column)


def downgrade() -> None:
    for table, column in reversed(_COLUMNS):
        op.drop_column(table, column.name)
