"""Chat prompts: each prompt's `prompt_format` (plain, chat or auto) and `system` message, and
`articles.prompt_format`, the form each article's prompt took (plain or chat)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = [
    ("prompts", sa.Column("prompt_format", sa.String(length=16), nullable=True)),
    ("prompts", sa.Column("system", sa.Text(), nullable=True)),
    ("articles", sa.Column("prompt_format", sa.String(length=16), nullable=True)),
]


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them in place, without copying a table, so the
    # full-text search's view and triggers (migration 0004) stay as they are. NULL means what
    # was meant before: a prompt takes its preset's format and system message, then the
    # settings'; an older article's form is unknown (it was plain: nothing else existed).
    for table, column in _COLUMNS:
        op.add_column(table, column)


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later), not batch mode: copying `prompts` or
    # `articles` would drop the search's triggers with the old table. Nothing else refers to
    # these columns, which SQLite's DROP COLUMN requires.
    for table, column in reversed(_COLUMNS):
        op.drop_column(table, column.name)
