"""The tables: prompts in, jobs that run, articles out. Typed `Mapped[...]` models and nothing else.

Schema changes go through Alembic (`db/migrations/`); a test checks that the migrations and these
models agree.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from articlegen.core.bounds import MAX_EXTERNAL_ID, MAX_NAME

__all__ = [
    "Article",
    "ArticleReviewStatus",
    "Base",
    "Job",
    "JobStatus",
    "LoginFailure",
    "Prompt",
    "PromptStatus",
    "ReviewAction",
    "ReviewEvent",
    "Reviewer",
    "ReviewerRole",
]


class PromptStatus(enum.StrEnum):
    """Where a prompt is in its life: waiting, being generated, finished or given up on."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


class JobStatus(enum.StrEnum):
    """The lifecycle of one generation run."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"  # its process stopped renewing its lease: it died


class ArticleReviewStatus(enum.StrEnum):
    """The client's verdict on an article."""

    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


class ReviewAction(enum.StrEnum):
    """What a reviewer did to an article (a row of the audit trail)."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"  # the editor's text saved beside the generated one (and approved)
    REGENERATE = "regenerate"  # a new version queued


class ReviewerRole(enum.StrEnum):
    """What a reviewer account may do: editors act, viewers read."""

    EDITOR = "editor"
    VIEWER = "viewer"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite stores no offset and hands back naive datetimes; this type stores UTC and always
    returns aware values, so comparisons never mix naive and aware times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_session_key() -> str:
    """A random key for a reviewer's session cookies."""
    return secrets.token_urlsafe(32)


# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # A VARCHAR with a CHECK constraint: portable, and new states need no type migration dance.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints predictably."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Prompt(Base):
    """A topic to write about, with how to write it. Imported from CSV or another source."""

    __tablename__ = "prompts"
    __table_args__ = (
        # Rows without an external id are identified by their content, so a re-import of the
        # same file is idempotent; the partial index makes that identity a database guarantee.
        Index(
            "uq_prompts_content_key_without_external_id",
            "content_key",
            unique=True,
            sqlite_where=text("external_id IS NULL"),
            postgresql_where=text("external_id IS NULL"),
        ),
        Index("ix_prompts_status_priority", "status", "priority"),
        # The review queue's tag filter (a GIN index on PostgreSQL; SQLite scans it).
        Index("ix_prompts_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(MAX_EXTERNAL_ID), unique=True)
    content_key: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(MAX_NAME))
    preset: Mapped[str | None] = mapped_column(String(MAX_NAME))
    decoding: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    priority: Mapped[int] = mapped_column(default=0)
    variants: Mapped[int] = mapped_column(default=1)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[PromptStatus] = mapped_column(
        _enum(PromptStatus, "prompt_status"), default=PromptStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The job that holds the claim (status `claimed`), or held it last: `jobs resume` takes
    # back the prompts a dead job had claimed.
    claimed_by: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    # A claim is good until then; the run renews it while it works. Past it, the prompt is
    # claimable again (its run died).
    lease_expires_at: Mapped[datetime | None]
    # Variants queued again by `review regenerate`; empty means "all variants" on a first run.
    regenerate: Mapped[list[int]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    articles: Mapped[list[Article]] = relationship(back_populates="prompt")


class Job(Base):
    """One generation run: its parameters, its progress and how it ended."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.QUEUED
    )
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model: Mapped[str | None] = mapped_column(String(500))
    model_revision: Mapped[str | None] = mapped_column(String(100))
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # While running: alive until then (renewed with its prompts' leases); past it, crashed.
    lease_expires_at: Mapped[datetime | None]
    # Set by `jobs cancel`; the run stops before its next batch.
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    articles: Mapped[list[Article]] = relationship(back_populates="job")


class Article(Base):
    """One generated article and everything needed to judge and reproduce it.

    Full-text search keeps its own objects beside this table (`db.search`): FTS5 tables on
    SQLite, a generated `search_vector` column on PostgreSQL.
    """

    __tablename__ = "articles"
    __table_args__ = (
        # The exactly-once guarantee: a second write of the same article is impossible.
        UniqueConstraint("prompt_id", "variant", "version"),
        # The review queue: a status, newest first, 50 a page; and its sorts and filters.
        Index("ix_articles_review_status_id", "review_status", "id"),
        Index("ix_articles_job_id", "job_id"),
        Index("ix_articles_model_name", "model_name"),
        Index("ix_articles_preset", "preset"),
        Index("ix_articles_perplexity", "perplexity"),
        Index("ix_articles_word_count", "word_count"),
        Index("ix_articles_flag_count", "flag_count"),
        Index("ix_articles_flags", "flags", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    variant: Mapped[int] = mapped_column(default=1)
    version: Mapped[int] = mapped_column(default=1)
    # The exact text the model continued (articles written before 0.1 have none).
    prompt_text: Mapped[str | None] = mapped_column(Text)
    raw_text: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    rendered: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(BigInteger)
    decoding: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_name: Mapped[str] = mapped_column(String(500))
    model_revision: Mapped[str | None] = mapped_column(String(100))
    template_name: Mapped[str | None] = mapped_column(String(MAX_NAME))
    template_version: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    tokens_generated: Mapped[int] = mapped_column(default=0)
    generation_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The preset the article was written with, and copies of the measures the review queue
    # sorts and filters on: columns with indexes, where `metrics` is one JSON document.
    preset: Mapped[str | None] = mapped_column(String(MAX_NAME))
    perplexity: Mapped[float | None] = mapped_column(Float)
    word_count: Mapped[int | None]
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    flag_count: Mapped[int] = mapped_column(default=0)
    review_status: Mapped[ArticleReviewStatus] = mapped_column(
        _enum(ArticleReviewStatus, "review_status"), default=ArticleReviewStatus.PENDING_REVIEW
    )
    reviewer_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(MAX_NAME))
    reviewed_at: Mapped[datetime | None]
    # An editor's text, kept beside the generated one and never over it; exports (and
    # fine-tuning) use it when it is there. `edited_rendered` holds its renderings.
    edited_title: Mapped[str | None] = mapped_column(Text)
    edited_body: Mapped[str | None] = mapped_column(Text)
    edited_rendered: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    edited_by: Mapped[str | None] = mapped_column(String(MAX_NAME))
    edited_at: Mapped[datetime | None]
    # Raised by every review action: two editors acting on one article, the second finds the
    # number moved and is told who changed it, instead of overwriting it.
    lock_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompt: Mapped[Prompt] = relationship(back_populates="articles")
    job: Mapped[Job | None] = relationship(back_populates="articles")
    events: Mapped[list[ReviewEvent]] = relationship(
        back_populates="article", order_by="ReviewEvent.id", cascade="all, delete-orphan"
    )


class ReviewEvent(Base):
    """One review action on one article: the audit trail, never edited."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    actor: Mapped[str] = mapped_column(String(MAX_NAME))
    action: Mapped[ReviewAction] = mapped_column(_enum(ReviewAction, "review_action"))
    note: Mapped[str | None] = mapped_column(Text)
    status_before: Mapped[ArticleReviewStatus] = mapped_column(
        _enum(ArticleReviewStatus, "review_event_before")
    )
    status_after: Mapped[ArticleReviewStatus] = mapped_column(
        _enum(ArticleReviewStatus, "review_event_after")
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    article: Mapped[Article] = relationship(back_populates="events")


class Reviewer(Base):
    """An account of the review workspace. Only a hash of its password is stored."""

    __tablename__ = "reviewers"
    # SQLite would hand a removed account's id to the next one; its old cookies must not
    # name the new account.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's own form)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    role: Mapped[ReviewerRole] = mapped_column(_enum(ReviewerRole, "reviewer_role"))
    password_hash: Mapped[str] = mapped_column(String(200))
    # A random key every session cookie of the account carries; a new one (logging out) ends
    # them all.
    session_key: Mapped[str] = mapped_column(String(64), default=new_session_key)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """Failed logins in a row for a name from one client, whether or not an account has the
    name: each further try waits longer, and a name that exists answers like one that does
    not. Keyed by a digest of the two, so another client cannot lock the account out."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
