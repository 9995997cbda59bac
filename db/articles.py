"""Article use cases: record a batch of results, list and show articles (review: `db.review`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from articlegen.core.errors import NotFoundError
from articlegen.db.backends import json_has_any
from articlegen.db.claims import held_by, note_failure
from articlegen.db.models import (
    Article,
    ArticleReviewStatus,
    Job,
    ModelKind,
    Prompt,
    PromptStatus,
)

__all__ = [
    "ApprovedText",
    "ArticleRow",
    "PromptFailure",
    "RecordedBatch",
    "approved_texts",
    "get_article",
    "list_articles",
    "next_versions",
    "record_batch",
]


@dataclass(frozen=True)
class PromptFailure:
    """A prompt of a batch that could not be written, with the reason shown to the user."""

    prompt_id: int
    reason: str
    articles: int  # how many of its articles were planned and not written


@dataclass(frozen=True)
class ArticleRow:
    """One generated article as write-back stores it; the batch's job is added on the way."""

    prompt_id: int
    variant: int
    version: int
    raw_text: str
    title: str
    body: str
    rendered: dict[str, str]
    seed: int
    decoding: dict[str, Any]
    model_name: str
    model_revision: str | None
    template_name: str | None
    template_version: str | None
    prompt_tokens: int
    tokens_generated: int
    generation_seconds: float
    timings: dict[str, Any]
    finish_reason: str | None
    metrics: dict[str, Any]
    preset: str | None = None
    prompt_text: str | None = None
    prompt_format: str | None = None  # the form the prompt took: plain or chat
    model_id: int | None = None  # its row in the model registry
    model_kind: ModelKind | None = None  # that row's kind, kept if the row is removed

    def values(self, job_id: int | None) -> dict[str, Any]:
        """Its column values, for the job that wrote it, with the measures the review queue
        sorts and filters on copied out of `metrics`."""
        flags = list(self.metrics.get("flags", []))
        values = {
            **asdict(self),
            "job_id": job_id,
            "perplexity": self.metrics.get("perplexity"),
            "word_count": self.metrics.get("word_count"),
            "flags": flags,
            "flag_count": len(flags),
        }
        for name in ("raw_text", "title", "body", "prompt_text"):
            # Byte-level tokenizers can produce a NUL byte, which PostgreSQL text refuses.
            if values[name] is not None:
                values[name] = values[name].replace("\x00", "\ufffd")
        return values


def next_versions(session: Session, prompt_ids: Sequence[int]) -> dict[tuple[int, int], int]:
    """For each (prompt, variant) already written, the version a new article would take."""
    if not prompt_ids:
        return {}
    rows = session.execute(
        select(Article.prompt_id, Article.variant, func.max(Article.version))
        .where(Article.prompt_id.in_(prompt_ids))
        .group_by(Article.prompt_id, Article.variant)
    )
    return {(p, v): int(version) + 1 for p, v, version in rows}


@dataclass(frozen=True)
class RecordedBatch:
    """What a write-back stored: the new articles, and the prompts it could not settle
    because the run no longer held them (its lease ran out and another run took them)."""

    articles: list[Article]
    lost: list[int]


def _insert_new(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert article rows, skipping any whose (prompt, variant, version) exists; return the
    ids of those inserted. A replayed write-back adds nothing and fails nothing."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Article)
        .on_conflict_do_nothing(index_elements=["prompt_id", "variant", "version"])
        .returning(Article.id)
    )
    return list(session.scalars(statement, list(rows)))


def record_batch(
    session: Session,
    job_id: int,
    articles: Sequence[ArticleRow],
    failures: Sequence[PromptFailure],
) -> RecordedBatch:
    """Write a batch's articles, settle its prompts and count them on the job, in one go.

    Only prompts the job still holds are written and
    settled (`db.claims.held_by` locks them): a prompt with a failure ends `failed` with the
    reason, every other one `done`, and its lease ends.
    """
    failed = {f.prompt_id: f for f in failures}
    ids = sorted({a.prompt_id for a in articles} | set(failed))
    held = held_by(session, job_id, ids)
    rows = [a.values(job_id) for a in articles if a.prompt_id in held]
    new_ids = _insert_new(session, rows)
    for prompt_id in sorted(held):
        prompt = session.get_one(Prompt, prompt_id)
        prompt.lease_expires_at = None
        if prompt_id in failed:
            # The variants a review queued again stay queued: a retry writes those.
            prompt.status = PromptStatus.FAILED
            note_failure(prompt, job_id, failed[prompt_id].reason)
        else:
            prompt.status = PromptStatus.DONE
            prompt.regenerate = []
            prompt.last_error = None
    job = session.get_one(Job, job_id)
    job.done += len(new_ids)
    job.failed += sum(f.articles for f in failures if f.prompt_id in held)
    session.flush()
    stored = session.scalars(select(Article).where(Article.id.in_(new_ids)).order_by(Article.id))
    return RecordedBatch(list(stored), [p for p in ids if p not in held])


def get_article(session: Session, article_id: int) -> Article:
    """The article with its prompt loaded, or `NotFoundError`."""
    article = session.get(Article, article_id, options=[joinedload(Article.prompt)])
    if article is None:
        raise NotFoundError(
            f"no article {article_id}: `articlegen articles list` shows the articles there are"
        )
    return article


def list_articles(
    session: Session,
    status: ArticleReviewStatus | None = None,
    job_id: int | None = None,
    limit: int | None = None,
) -> list[Article]:
    """Articles (with their prompts), oldest first."""
    query = select(Article).options(joinedload(Article.prompt)).order_by(Article.id)
    if status is not None:
        query = query.where(Article.review_status == status)
    if job_id is not None:
        query = query.where(Article.job_id == job_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


@dataclass(frozen=True)
class ApprovedText:
    """An approved article as training text: what the model was given, then what the editors
    approved (their edit, where they made one)."""

    article_id: int
    prompt_text: str
    body: str
    prompt_format: str | None = None  # chat: `prompt_text` is a chat template's text


def approved_texts(
    session: Session, tags: Sequence[str] = (), since: datetime | None = None
) -> list[ApprovedText]:
    """Approved articles, oldest first: of prompts with any of `tags`, approved since `since`."""
    query = (
        select(
            Article.id,
            func.coalesce(Article.prompt_text, Article.title + "\n\n"),
            func.coalesce(Article.edited_body, Article.body),
            Article.prompt_format,
        )
        .where(Article.review_status == ArticleReviewStatus.APPROVED)
        .order_by(Article.id)
    )
    if tags:
        dialect = session.get_bind().dialect.name
        query = query.join(Prompt).where(json_has_any(dialect, Prompt.tags, tags))
    if since is not None:
        query = query.where(Article.reviewed_at >= since)
    return [ApprovedText(*row) for row in session.execute(query)]
