"""Leases: prompts.claimed_by and lease_expires_at, jobs.lease_expires_at, cancel_requested and
the `crashed` status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("queued", "running", "completed", "completed_with_errors", "failed", "cancelled")
_AFTER = (*_BEFORE, "crashed")


def _statuses(values: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    # SQLite copies both tables (batch mode); existing rows hold no claim and no lease.
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_prompts_claimed_by"), ["claimed_by"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_prompts_claimed_by_jobs"),
            "jobs",
            ["claimed_by"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_constraint(batch_op.f("ck_jobs_job_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_jobs_job_status"), _statuses(_AFTER))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_jobs_job_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_jobs_job_status"), _statuses(_BEFORE))
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("lease_expires_at")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_prompts_claimed_by_jobs"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_prompts_claimed_by"))
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("claimed_by")
