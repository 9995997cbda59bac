"""The model registry: a `models` table, and `articles.model_id` naming the row of the model that
wrote each article (articles written before get rows for their models: Hub ids and directories)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_KINDS = ("hub", "local", "fine_tuned", "from_scratch")
_STATUSES = ("training", "ready", "failed")
# Batch mode copies `articles` on SQLite: the full-text search's view over it (migration 0004)
# must go first (SQLite checks views when the copy is renamed), and the copy has none of the
# search's triggers. Both are made again, as they were.
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


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.Enum(*_KINDS, name="model_kind", native_enum=False,
                                  create_constraint=True, length=32), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("revision", sa.String(length=100), nullable=True),
        sa.Column("base", sa.String(length=1000), nullable=True),
        sa.Column("base_revision", sa.String(length=100), nullable=True),
        sa.Column("corpus_hash", sa.String(length=64), nullable=True),
        sa.Column("corpus", _JSON, nullable=False),
        sa.Column("hyperparameters", _JSON, nullable=False),
        sa.Column("epochs", _JSON, nullable=False),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("memorisation", _JSON, nullable=False),
        sa.Column("progress", _JSON, nullable=False),
        sa.Column("status", sa.Enum(*_STATUSES, name="model_status", native_enum=False,
                                    create_constraint=True, length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", name=op.f("uq_models_name")),
    )  # fmt: skip
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW article_search_source")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_articles_model_id", ["model_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_articles_model_id_models"),
            "models",
            ["model_id"],
            ["id"],
            ondelete="SET NULL",
        )
    if sqlite:
        for statement in [_SQLITE_VIEW, *_SQLITE_ARTICLE_TRIGGERS]:
            op.execute(statement)
    _register_existing(op.get_bind())


def _register_existing(bind: sa.Connection) -> None:
    """A row for each (model, revision) that wrote articles; the articles point to it."""
    found = bind.execute(
        sa.text(
            "SELECT model_name, model_revision, min(id) FROM articles "
            "GROUP BY model_name, model_revision ORDER BY min(id)"
        )
    ).all()
    taken: set[str] = set()
    for name, model_revision, _ in found:
        # One name per row (the names as `ensure_model` gives them): a model seen again at
        # another revision gets the revision in its name, and a number if even that is taken.
        suffix = "@" + (model_revision or "unknown").removeprefix("sha256:")[:12]
        label = name[:100]
        number = 1
        while label in taken:
            tail = suffix if number == 1 else f"{suffix}-{number}"
            label = name[: 100 - len(tail)] + tail
            number += 1
        taken.add(label)
        kind = "local" if (model_revision or "").startswith("sha256:") else "hub"
        bind.execute(
            sa.text(
                "INSERT INTO models (name, kind, source, revision, corpus, hyperparameters, "
                "epochs, memorisation, progress, status, created_at) VALUES (:label, :kind, "
                ":name, :revision, '{}', '{}', '[]', '{}', '{}', 'ready', CURRENT_TIMESTAMP)"
            ),
            {"label": label, "kind": kind, "name": name, "revision": model_revision},
        )
        bind.execute(
            sa.text(
                "UPDATE articles SET model_id = (SELECT id FROM models WHERE name = :label) "
                "WHERE model_name = :name AND model_revision IS NOT DISTINCT FROM :revision"
                if bind.dialect.name == "postgresql"
                else "UPDATE articles SET model_id = (SELECT id FROM models WHERE name = :label) "
                "WHERE model_name = :name AND model_revision IS :revision"
            ),
            {"label": label, "name": name, "revision": model_revision},
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW article_search_source")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_articles_model_id_models"), type_="foreignkey")
        batch_op.drop_index("ix_articles_model_id")
        batch_op.drop_column("model_id")
    if sqlite:
        for statement in [_SQLITE_VIEW, *_SQLITE_ARTICLE_TRIGGERS]:
            op.execute(statement)
    op.drop_table("models")
