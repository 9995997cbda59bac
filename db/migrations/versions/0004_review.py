"""The review workspace: review_events (the audit trail), reviewers (accounts), and on articles
the editor's text beside the generated one, an optimistic lock version, the preset, and copies
of the measures the review queue sorts and filters on, with their indexes; full-text search of
articles and topics (SQLite: FTS5 tables kept by triggers; PostgreSQL: GIN indexes)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("pending_review", "approved", "rejected")
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _check(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.Enum("editor", "viewer", name="reviewer_role", native_enum=False,
                                  create_constraint=True, length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("session_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("name", name=op.f("uq_reviewers_name")),
        sqlite_autoincrement=True,
    )  # fmt: skip
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.Enum("approve", "reject", "edit", "regenerate",
                                    name="review_action", native_enum=False,
                                    create_constraint=True, length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status_before", sa.Enum(*_STATUSES, name="review_event_before",
                                           native_enum=False, create_constraint=True,
                                           length=32), nullable=False),
        sa.Column("status_after", sa.Enum(*_STATUSES, name="review_event_after",
                                          native_enum=False, create_constraint=True,
                                          length=32), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"],
                                name=op.f("fk_review_events_article_id_articles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_review_events_article_id"), "review_events", ["article_id"], unique=False
    )
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.create_index("ix_prompts_tags", ["tags"], postgresql_using="gin")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("preset", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("perplexity", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("word_count", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("flags", _JSON, nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column("flag_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("edited_title", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("edited_body", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("edited_rendered", _JSON, nullable=True))
        batch_op.add_column(sa.Column("edited_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("lock_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.drop_index("ix_articles_review_status")
        batch_op.create_index("ix_articles_review_status_id", ["review_status", "id"])
        for column in ("job_id", "model_name", "preset", "perplexity", "word_count"):
            batch_op.create_index(f"ix_articles_{column}", [column])
        batch_op.create_index("ix_articles_flag_count", ["flag_count"])
        batch_op.create_index("ix_articles_flags", ["flags"], postgresql_using="gin")
    _create_search(op.get_bind().dialect.name)
    # The articles written so far: their measures, copied out of the metrics document.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE articles SET perplexity = (metrics->>'perplexity')::float, "
            "word_count = (metrics->>'word_count')::int, "
            "flags = COALESCE(metrics->'flags', '[]'::jsonb), "
            "flag_count = jsonb_array_length(COALESCE(metrics->'flags', '[]'::jsonb))"
        )
    else:
        op.execute(
            "UPDATE articles SET perplexity = json_extract(metrics, '$.perplexity'), "
            "word_count = json_extract(metrics, '$.word_count'), "
            "flags = COALESCE(json_extract(metrics, '$.flags'), '[]'), "
            "flag_count = COALESCE(json_array_length(metrics, '$.flags'), 0)"
        )


# SQLite keeps its search in FTS5 tables over a view of the current texts and over the
# prompts' topics; triggers keep them in step with every insert, update and delete. A later
# migration that rebuilds `articles` or `prompts` in batch mode (copy, drop, rename) drops these
# triggers with the old table and must create them again.
_SQLITE_SEARCH = [
    "CREATE VIEW article_search_source AS SELECT id, coalesce(edited_title, title) AS title, "
    "coalesce(edited_body, body) AS body FROM articles",
    "CREATE VIRTUAL TABLE article_search USING fts5(title, body, "
    "content='article_search_source', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE VIRTUAL TABLE prompt_search USING fts5(topic, content='prompts', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
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
    "CREATE TRIGGER prompt_search_insert AFTER INSERT ON prompts BEGIN "
    "INSERT INTO prompt_search(rowid, topic) VALUES (new.id, new.topic); END",
    "CREATE TRIGGER prompt_search_delete AFTER DELETE ON prompts BEGIN "
    "INSERT INTO prompt_search(prompt_search, rowid, topic) VALUES ('delete', old.id, "
    "old.topic); END",
    "CREATE TRIGGER prompt_search_update AFTER UPDATE OF topic ON prompts BEGIN "
    "INSERT INTO prompt_search(prompt_search, rowid, topic) VALUES ('delete', old.id, "
    "old.topic); INSERT INTO prompt_search(rowid, topic) VALUES (new.id, new.topic); END",
    "INSERT INTO article_search(article_search) VALUES ('rebuild')",
    "INSERT INTO prompt_search(prompt_search) VALUES ('rebuild')",
]
# PostgreSQL: a stored vector of each text (a search matching most rows reads them instead of
# parsing every text again), generated by the database itself, with a GIN index. Everything but
# letters and digits becomes a space first, so words are cut where SQLite's tokenizer cuts them
# (PostgreSQL's own parser would keep e-mail addresses and host names whole).
_POSTGRES_SEARCH = [
    "ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', regexp_replace(coalesce(edited_title, title) || ' ' || "
    "coalesce(edited_body, body), '[^[:alnum:]]+', ' ', 'g'))) STORED",
    "CREATE INDEX ix_articles_search ON articles USING gin (search_vector)",
    "ALTER TABLE prompts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', regexp_replace(topic, '[^[:alnum:]]+', ' ', 'g'))) STORED",
    "CREATE INDEX ix_prompts_search ON prompts USING gin (search_vector)",
]


def _create_search(dialect: str) -> None:
    for statement in _POSTGRES_SEARCH if dialect == "postgresql" else _SQLITE_SEARCH:
        op.execute(statement)


def _drop_search(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS search_vector")
        op.execute("ALTER TABLE prompts DROP COLUMN IF EXISTS search_vector")
        return
    for trigger in (
        "article_search_insert",
        "article_search_delete",
        "article_search_update",
        "prompt_search_insert",
        "prompt_search_delete",
        "prompt_search_update",
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS article_search")
    op.execute("DROP TABLE IF EXISTS prompt_search")
    op.execute("DROP VIEW IF EXISTS article_search_source")


def downgrade() -> None:
    _drop_search(op.get_bind().dialect.name)
    with op.batch_alter_table("articles", schema=None) as batch_op:
        for column in (
            "flags",
            "flag_count",
            "word_count",
            "perplexity",
            "preset",
            "model_name",
            "job_id",
        ):
            batch_op.drop_index(f"ix_articles_{column}")
        batch_op.drop_index("ix_articles_review_status_id")
        batch_op.create_index("ix_articles_review_status", ["review_status"])
        for column in (
            "lock_version",
            "edited_at",
            "edited_by",
            "edited_rendered",
            "edited_body",
            "edited_title",
            "reviewed_by",
            "flag_count",
            "flags",
            "word_count",
            "perplexity",
            "preset",
            "prompt_text",
        ):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_review_events_article_id"), table_name="review_events")
    op.drop_table("review_events")
    op.drop_table("login_failures")
    op.drop_table("reviewers")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_index("ix_prompts_tags")
