"""Review use cases in the database: verdicts, edits and regenerations, each with its row in
the audit trail (`review_events`), one article at a time or many at once.

An action on one article locks its row and checks the version the reviewer saw
(`lock_version`): if another editor acted meanwhile, `ConflictError` says who and when, and
nothing is written. Every action raises the version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, insert, select, update
from sqlalchemy.orm import Session, joinedload

from articlegen.core.errors import ConflictError, NotFoundError
from articlegen.db.models import (
    Article,
    ArticleReviewStatus,
    Prompt,
    PromptStatus,
    ReviewAction,
    ReviewEvent,
    utcnow,
)
from articlegen.db.session import in_chunks

__all__ = [
    "events_of",
    "lock_article",
    "lock_matching",
    "queue_regeneration",
    "record",
    "review_many",
    "save_edit",
    "set_verdict",
    "versions_of",
]

_VERB = {
    ReviewAction.APPROVE: "approved it",
    ReviewAction.REJECT: "rejected it",
    ReviewAction.EDIT: "edited it",
    ReviewAction.REGENERATE: "queued a new version",
}


def lock_article(session: Session, article_id: int, seen_version: int | None = None) -> Article:
    """The article, its row locked until the transaction ends; `NotFoundError` if there is
    none, `ConflictError` if it changed since the reviewer saw `seen_version`."""
    article = session.scalars(
        select(Article)
        .where(Article.id == article_id)
        .options(joinedload(Article.prompt))
        .with_for_update(of=Article)
    ).one_or_none()
    if article is None:
        raise NotFoundError(
            f"no article {article_id}: `articlegen articles list` shows the articles there are"
        )
    if seen_version is not None and article.lock_version != seen_version:
        last = session.scalars(
            select(ReviewEvent)
            .where(ReviewEvent.article_id == article_id)
            .order_by(ReviewEvent.id.desc())
            .limit(1)
        ).first()
        who = (
            f"{last.actor} {_VERB[last.action]} at {last.created_at:%Y-%m-%d %H:%M:%S} UTC"
            if last is not None
            else "it was changed"
        )
        raise ConflictError(
            f"article {article_id} changed since you opened it: {who}. Reload it to see the "
            "change; nothing of yours was saved"
        )
    return article


def record(
    session: Session,
    article: Article,
    actor: str,
    action: ReviewAction,
    before: ArticleReviewStatus,
    note: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ReviewEvent:
    """Add the action to the article's audit trail and raise its version."""
    event = ReviewEvent(
        article_id=article.id,
        actor=actor,
        action=action,
        note=note,
        status_before=before,
        status_after=article.review_status,
        details=dict(details or {}),
        created_at=utcnow(),
    )
    session.add(event)
    article.lock_version += 1
    session.flush()
    return event


def set_verdict(
    session: Session,
    article: Article,
    verdict: ArticleReviewStatus,
    actor: str,
    note: str | None = None,
) -> ReviewEvent:
    """Approve or reject `article` (locked). Without a note, the one it has stays."""
    before = article.review_status
    article.review_status = verdict
    if note is not None:
        article.reviewer_note = note
    article.reviewed_by = actor
    article.reviewed_at = utcnow()
    return record(session, article, actor, _action(verdict), before, note)


def save_edit(
    session: Session,
    article: Article,
    title: str,
    body: str,
    rendered: Mapping[str, str],
    actor: str,
    note: str | None = None,
) -> ReviewEvent:
    """Store an editor's text beside the generated one and approve the article."""
    before = article.review_status
    now = utcnow()
    article.edited_title = title
    article.edited_body = body
    article.edited_rendered = dict(rendered)
    article.edited_by = actor
    article.edited_at = now
    article.review_status = ArticleReviewStatus.APPROVED
    if note is not None:
        article.reviewer_note = note
    article.reviewed_by = actor
    article.reviewed_at = now
    return record(session, article, actor, ReviewAction.EDIT, before, note)


def queue_regeneration(
    session: Session,
    articles: Sequence[Article],
    actor: str,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> int:
    """Send the articles' prompts back to `pending` so the next run writes each article's
    variant again, as a new version; the old versions stay. A new preset or decoding
    overrides (already validated) apply from then on. Returns how many prompts were queued."""
    prompts: dict[int, Prompt] = {}
    for article in articles:
        prompt = prompts.setdefault(article.prompt_id, article.prompt)
        prompt.regenerate = sorted({*prompt.regenerate, article.variant})
        prompt.status = PromptStatus.PENDING
        prompt.last_error = None
        if preset is not None:
            prompt.preset = preset
        if overrides:
            prompt.decoding = {**prompt.decoding, **overrides}
        details = {"preset": preset, "settings": dict(overrides or {})}
        record(
            session, article, actor, ReviewAction.REGENERATE, article.review_status, None, details
        )
    return len(prompts)


def lock_matching(session: Session, ids: Select[Any]) -> list[tuple[int, ArticleReviewStatus]]:
    """The articles `ids` selects, with their statuses, locked until the transaction ends
    (PostgreSQL; SQLite's write transaction already holds the whole database), by id."""
    query = (
        select(Article.id, Article.review_status)
        .where(Article.id.in_(ids.scalar_subquery()))
        .order_by(Article.id)
        .with_for_update()
    )
    return [(article_id, status) for article_id, status in session.execute(query)]


def review_many(
    session: Session,
    articles: Sequence[tuple[int, ArticleReviewStatus]],
    verdict: ArticleReviewStatus,
    actor: str,
    note: str | None = None,
) -> int:
    """Approve or reject the articles (ids with their status before, locked by
    `lock_matching`), each with its audit-trail row. Returns how many."""
    now = utcnow()
    action = _action(verdict)
    values: dict[str, Any] = {
        "review_status": verdict,
        "reviewed_by": actor,
        "reviewed_at": now,
        "lock_version": Article.lock_version + 1,
    }
    if note is not None:
        values["reviewer_note"] = note
    ids = [article_id for article_id, _ in articles]
    for chunk in in_chunks(ids):
        session.execute(
            update(Article).where(Article.id.in_(chunk)).values(**values),
            execution_options={"synchronize_session": False},
        )
    events: list[dict[str, Any]] = [
        {
            "article_id": article_id,
            "actor": actor,
            "action": action,
            "note": note,
            "status_before": before,
            "status_after": verdict,
            "details": {},
            "created_at": now,
        }
        for article_id, before in articles
    ]
    if events:
        session.execute(insert(ReviewEvent), events)
    return len(ids)


def _action(verdict: ArticleReviewStatus) -> ReviewAction:
    if verdict is ArticleReviewStatus.APPROVED:
        return ReviewAction.APPROVE
    return ReviewAction.REJECT


def events_of(session: Session, article_id: int) -> list[ReviewEvent]:
    """The article's audit trail, oldest first."""
    query = select(ReviewEvent).where(ReviewEvent.article_id == article_id)
    return list(session.scalars(query.order_by(ReviewEvent.id)))


def versions_of(session: Session, article: Article) -> list[Article]:
    """Every version of the article's variant (its prompt's), oldest first."""
    query = select(Article).where(
        Article.prompt_id == article.prompt_id, Article.variant == article.variant
    )
    return list(session.scalars(query.order_by(Article.version)))
