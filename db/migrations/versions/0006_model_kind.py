"""Random weights say so: the registry's kind `random` (a model `articlegen models init` wrote,
never trained), and `articles.model_kind`, the kind of the model that wrote each article, kept
when the model's row is removed (articles written before take their linked row's kind)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = ("hub", "local", "fine_tuned", "from_scratch")
_NEW_KINDS = (*_KINDS, "random")
_CHECK = "ck_models_model_kind"
# Batch mode copies `articles` on SQLite when a column is dropped: the full-text search's view
# over it (migration 0004) must go first, and the copy has none of the search's triggers. Both
# are made again, as they were (as in 0005).
_SQLITE_VIEW = (
    "CREATE VIEW article_search_source AS SELECT id, coalesce(edited_title, title) AS title, "
    "coalesce(edited_body, body) AS body FROM articles"
)
_SQLITE_ARTICLE_TRIGGERS = [
    "CREATE TRIGGER article_search_insert AFTER INSERT ON articles BEGIN "
    "INSERT INTO article_search(rowid, title, body) VALUES (new.id, "
    "coalesce(new.edited_title, new.title), coalesce(new.edited_body, new.body)); END",
    "CREATE TRIGGER article_search_delete AFTER DELETE ON articles BEGIN "
    "INSERT INTO article_search(article_search, rowid, title, body) VALUES ('delete', old.id, "
    "coalesce(old.edited_title, old.title), coalesce(old.edited_body, old.body)); END",
    "CREATE TRIGGER article_search_update AFTER UPDATE OF title, body, edited_title, "
    "edited_body ON articles BEGIN "
    "INSERT INTO article_search(article_search, rowid, title, body) VALUES ('delete', old.id, "
    "coalesce(old.edited_title, old.title), coalesce(old.edited_body, old.body)); "
    "INSERT INTO article_search(rowid, title, body) VALUES (new.id, "
    "coalesce(new.edited_title, new.title), coalesce(new.edited_body, new.body)); END",
]


def _kinds_check(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _replace_check(kinds: Sequence[str]) -> None:
    # A CHECK constraint can't be altered in place: dropped and made again (on SQLite batch
    # mode copies `models`, which nothing but a foreign key of `articles` refers to).
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(_kinds_check(kinds)))


def upgrade() -> None:
    _replace_check(_NEW_KINDS)
    # A plain nullable column: SQLite adds it in place, without copying the table.
    op.add_column("articles", sa.Column("model_kind", sa.String(length=32), nullable=True))
    # The articles written so far take the kind of the row they link to; those whose row was
    # removed stay unknown (NULL). None of them is `random`: no row had that kind before.
    op.execute(
        "UPDATE articles SET model_kind = "
        "(SELECT models.kind FROM models WHERE models.id = articles.model_id) "
        "WHERE model_id IS NOT NULL"
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW article_search_source")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_column("model_kind")
    if sqlite:
        for statement in [_SQLITE_VIEW, *_SQLITE_ARTICLE_TRIGGERS]:
            op.execute(statement)
    # The old check knows no `random`: such a model was a directory of someone's making.
    op.execute("UPDATE models SET kind = 'local' WHERE kind = 'random'")
    _replace_check(_KINDS)
