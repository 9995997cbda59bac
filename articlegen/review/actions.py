"""What a reviewer does to articles: approve, reject, edit then approve, regenerate, one at a
time or many at once. The CLI and the web workspace call these same functions.

Each action writes its row of the audit trail. An action may name the version of each article
the reviewer saw; if another editor acted since, nothing is written and `ConflictError` says who
acted and when. Acting on every article a filter holds names the set the reviewer confirmed
(`Snapshot`); if it moved since, nothing is written either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_ARTICLE_TEXT, MAX_NOTE, MAX_TOPIC, check_id
from articlegen.core.errors import ConfigError, InputError
from articlegen.core.safe_text import strip_controls
from articlegen.db.models import Article, ArticleReviewStatus, Prompt, PromptStatus
from articlegen.db.queue import ArticleFilter, matching
from articlegen.db.review import (
    lock_article,
    lock_matching,
    queue_regeneration,
    review_many,
    save_edit,
    set_verdict,
)
from articlegen.generator.articles import (
    DEFAULT_TEMPLATE,
    article_context,
    article_meta,
    render_article,
)
from articlegen.generator.decoding import DecodingOverrides
from articlegen.generator.postprocess import words
from articlegen.generator.presets import PresetCatalog
from articlegen.generator.templates import Templates

__all__ = [
    "Snapshot",
    "approve",
    "edit_and_approve",
    "regenerate",
    "reject",
    "review_ids",
    "review_matching",
    "snapshot",
    "unique_ids",
]


def unique_ids(ids: Iterable[int]) -> list[int]:
    """`ids` once each, in the order given; `NotFoundError` for one no row can have."""
    seen = list(dict.fromkeys(ids))
    for article_id in seen:
        check_id(article_id, "article", "articlegen articles list")
    return seen


def _text(value: str, what: str, most: int) -> str:
    """A reviewer's text, trimmed, without control or bidirectional characters (which would
    show a reader another text than the one stored; only they would make it empty); `InputError`
    if it is too long or holds a NUL byte (which PostgreSQL cannot store)."""
    if "\x00" in value:
        raise InputError(f"the {what} holds a NUL character: remove it")
    value = strip_controls(value).strip()
    if len(value) > most:
        raise InputError(f"the {what} is {len(value):,} characters: keep it under {most:,}")
    return value


def _note(note: str | None, what: str = "note") -> str | None:
    if note is None:
        return None
    return _text(note, what, MAX_NOTE) or None


def _reason(reason: str | None) -> str:
    text = _note(reason, "reason")
    if text is None:
        raise InputError("a rejection needs a reason: say what is wrong, for the record")
    return text


def approve(
    session: Session,
    article_id: int,
    actor: str,
    note: str | None = None,
    seen_version: int | None = None,
) -> Article:
    """Approve one article; without a note, the one it has stays."""
    text = _note(note)
    article = lock_article(session, article_id, seen_version)
    set_verdict(session, article, ArticleReviewStatus.APPROVED, actor, text)
    return article


def reject(
    session: Session,
    article_id: int,
    actor: str,
    reason: str | None,
    seen_version: int | None = None,
) -> Article:
    """Reject one article, with a reason (required, kept as its note)."""
    text = _reason(reason)
    article = lock_article(session, article_id, seen_version)
    set_verdict(session, article, ArticleReviewStatus.REJECTED, actor, text)
    return article


def review_ids(
    session: Session,
    ids: Sequence[int],
    verdict: ArticleReviewStatus,
    actor: str,
    note: str | None = None,
    seen: Mapping[int, int] | None = None,
) -> list[Article]:
    """Approve or reject several articles: each id once, all or none (an unknown id, or one
    changed since the version in `seen`, changes nothing). Rejecting needs a reason."""
    text = _reason(note) if verdict is ArticleReviewStatus.REJECTED else _note(note)
    versions = seen or {}
    articles = [lock_article(session, i, versions.get(i)) for i in unique_ids(ids)]
    for article in articles:
        set_verdict(session, article, verdict, actor, text)
    return articles


@dataclass(frozen=True)
class Snapshot:
    """The articles a filter holds at one moment: how many, and a digest of their ids."""

    count: int
    digest: str


def _digest(ids: Iterable[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:32]


def snapshot(session: Session, f: ArticleFilter) -> Snapshot:
    """What the filter holds now, for the reviewer to confirm."""
    ids = list(session.scalars(matching(session, f).order_by(Article.id)))
    return Snapshot(len(ids), _digest(ids))


def review_matching(
    session: Session,
    f: ArticleFilter,
    verdict: ArticleReviewStatus,
    actor: str,
    confirmed: Snapshot,
    note: str | None = None,
) -> int:
    """Approve or reject every article the filter holds, if they are still the ones the
    reviewer confirmed: new articles, or another editor's verdicts, write nothing."""
    text = _reason(note) if verdict is ArticleReviewStatus.REJECTED else _note(note)
    locked = lock_matching(session, matching(session, f))
    now = Snapshot(len(locked), _digest(article_id for article_id, _ in locked))
    if now != confirmed:
        raise InputError(
            f"the filter now holds {now.count:,} articles, not the {confirmed.count:,} you "
            "confirmed (or not the same ones): check the list and confirm again; nothing was "
            "changed"
        )
    return review_many(session, locked, verdict, actor, text)


def edit_and_approve(
    session: Session,
    templates: Templates,
    article_id: int,
    actor: str,
    title: str,
    body: str,
    seen_version: int | None = None,
    note: str | None = None,
) -> Article:
    """Keep an editor's title and text beside the generated ones, render them with the
    article's own templates, and approve the article."""
    title = " ".join(_text(title, "title", MAX_TOPIC).split())
    body = _text(body.replace("\r\n", "\n"), "text", MAX_ARTICLE_TEXT)
    if not title or not body:
        raise InputError("an edited article needs a title and a text: neither may be empty")
    text = _note(note)
    article = lock_article(session, article_id, seen_version)
    prompt = article.prompt
    meta = article_meta(
        model=article.model_name,
        revision=article.model_revision,
        preset=article.preset,
        seed=article.seed,
        words=len(words(body)),
        perplexity=article.perplexity,
        flags=article.flags,
        tokens=article.tokens_generated,
        finish_reason=article.finish_reason,
        prompt_format=article.prompt_format,
    )
    sent = article.prompt_text or prompt.prompt or prompt.topic
    context = article_context(title, body, prompt.topic, sent, prompt.extra, meta)
    rendered, _ = render_article(templates, article.template_name or DEFAULT_TEMPLATE, context)
    save_edit(session, article, title, body, rendered, actor, text)
    return article


def regenerate(
    session: Session,
    presets: PresetCatalog,
    ids: Sequence[int],
    actor: str,
    preset: str | None = None,
    overrides: DecodingOverrides | None = None,
) -> int:
    """Queue a new version of each article; a preset or settings given apply to its prompt
    from then on. Each prompt's settings are checked with the new ones first, so a run never
    meets settings that cannot work. Returns how many prompts were queued."""
    articles = []
    for article_id in unique_ids(ids):
        article = lock_article(session, article_id)
        # Its prompt locked too: a run claiming it meanwhile would lose it to `pending`.
        prompt = session.scalars(
            select(Prompt)
            .where(Prompt.id == article.prompt_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if prompt.status is PromptStatus.CLAIMED:
            raise InputError(
                f"article {article_id}: its prompt is being generated by a running job; "
                "regenerate it once the job has finished (`articlegen jobs list`)"
            )
        try:
            presets.resolve(preset or prompt.preset, prompt.decoding, overrides)
        except ConfigError as exc:
            raise ConfigError(f"article {article_id}: {exc}") from None
        articles.append(article)
    settings = overrides.settings() if overrides else {}
    return queue_regeneration(session, articles, actor, preset, settings)
