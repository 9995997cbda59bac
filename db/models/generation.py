"""The tables of generation: prompts in, jobs that run, articles out."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from articlegen.core.bounds import MAX_EXTERNAL_ID, MAX_NAME
from articlegen.db.models.base import Base, JSONType, str_enum, utcnow
from articlegen.db.models.registry import ModelKind

__all__ = ["Article", "ArticleReviewStatus", "Job", "JobStatus", "Prompt", "PromptStatus"]


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
    # How the prompt reaches the model (`plain`, `chat`, `auto`) and its system message; NULL
    # takes the preset's, then the settings' (`generator.chat`). Checked where prompts enter.
    prompt_format: Mapped[str | None] = mapped_column(String(16))
    system: Mapped[str | None] = mapped_column(Text)
    decoding: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    priority: Mapped[int] = mapped_column(default=0)
    variants: Mapped[int] = mapped_column(default=1)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[PromptStatus] = mapped_column(
        str_enum(PromptStatus, "prompt_status"), default=PromptStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)  # claims so far (ARTICLEGEN_MAX_ATTEMPTS)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Every failure of the prompt, oldest first ({"job", "attempt", "error", "at"}): `prompts
    # retry` clears the failure, not its history.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
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
        str_enum(JobStatus, "job_status"), default=JobStatus.QUEUED
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
    # Set by `jobs cancel`; the run stops within one decoding step and writes what it finished.
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # The process that runs the job (`core.process`): on its own host, a run that finds it gone
    # marks the job crashed at once instead of waiting for its lease to run out.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    process_started: Mapped[str | None] = mapped_column(String(100))
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
        Index("ix_articles_model_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # The registry's row for the model that wrote it (`model_name` and `model_revision` stay,
    # whatever becomes of the registry).
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    # That model's kind, copied as the article is written: it outlives the registry row, so an
    # article of random weights says so after its model is removed. Unchecked in the database
    # (the registry's column checks it), so a new kind needs no rebuild of this table.
    model_kind: Mapped[ModelKind | None] = mapped_column(
        str_enum(ModelKind, "article_model_kind", checked=False)
    )
    variant: Mapped[int] = mapped_column(default=1)
    version: Mapped[int] = mapped_column(default=1)
    # The exact text the model was given (articles written before 0.1 have none): in chat form
    # the chat template's text, system message and special tokens included; in plain form the
    # text as given, to which the tokenizer adds its own special tokens (a BOS) when encoding.
    prompt_text: Mapped[str | None] = mapped_column(Text)
    # The form it took, `plain` or `chat` (articles written before migration 0007 have none).
    prompt_format: Mapped[str | None] = mapped_column(String(16))
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
        str_enum(ArticleReviewStatus, "review_status"), default=ArticleReviewStatus.PENDING_REVIEW
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
