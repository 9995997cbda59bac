"""What a reviewer does to articles: approve, reject, edit then approve, regenerate, one at a
time or many at once. The CLI and the web workspace call these same functions.

Each action writes its row of the audit trail. An action on one article may name the version
the reviewer saw; if another editor acted since, nothing is written and `ConflictError` says
who acted and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_ARTICLE_TEXT, MAX_ID, MAX_NOTE, MAX_TOPIC
from articlegen.core.errors import ConfigError, InputError, NotFoundError
from articlegen.db.models import Article, ArticleReviewStatus, PromptStatus
from articlegen.db.queue import ArticleFilter, count_matching, matching
from articlegen.db.review import (
    lock_article,
    queue_regeneration,
    review_many,
    save_edit,
    set_verdict,
)
from articlegen.generator.articles import DEFAULT_TEMPLATE, article_context, render_article
from articlegen.generator.decoding import DecodingOverrides
from articlegen.generator.presets import PresetCatalog
from articlegen.generator.templates import Templates

__all__ = [
    "approve",
    "edit_and_approve",
    "regenerate",
    "reject",
    "review_ids",
    "review_matching",
    "unique_ids",
]


def unique_ids(ids: Iterable[int]) -> list[int]:
    """`ids` once each, in the order given; `NotFoundError` for one no row can have."""
    seen = list(dict.fromkeys(ids))
    for article_id in seen:
        if not 1 <= article_id <= MAX_ID:
            raise NotFoundError(
                f"no article {article_id}: article ids run from 1 to {MAX_ID}; "
                "`articlegen articles list` shows the articles there are"
            )
    return seen


def _note(note: str | None, what: str = "note") -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InputError(f"the {what} is {len(note):,} characters: keep it under {MAX_NOTE:,}")
    return note or None


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
    article = lock_article(session, article_id, seen_version)
    set_verdict(session, article, ArticleReviewStatus.APPROVED, actor, _note(note))
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
) -> list[Article]:
    """Approve or reject several articles: each id once, all or none (an unknown id changes
    nothing). Rejecting needs a reason."""
    text = _reason(note) if verdict is ArticleReviewStatus.REJECTED else _note(note)
    articles = [lock_article(session, article_id) for article_id in unique_ids(ids)]
    for article in articles:
        set_verdict(session, article, verdict, actor, text)
    return articles


def review_matching(
    session: Session,
    f: ArticleFilter,
    verdict: ArticleReviewStatus,
    actor: str,
    expected: int,
    note: str | None = None,
) -> int:
    """Approve or reject every article the filter holds, once the reviewer has confirmed
    their number: if it moved since (new articles, another editor), nothing is written."""
    text = _reason(note) if verdict is ArticleReviewStatus.REJECTED else _note(note)
    count = count_matching(session, f)
    if count != expected:
        raise InputError(
            f"the filter now holds {count:,} articles, not the {expected:,} you confirmed: "
            "check the list and confirm again; nothing was changed"
        )
    return review_many(session, matching(session, f), verdict, actor, text)


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
    title, body = " ".join(title.split()), body.strip().replace("\r\n", "\n")
    if not title or not body:
        raise InputError("an edited article needs a title and a text: neither may be empty")
    if len(title) > MAX_TOPIC or len(body) > MAX_ARTICLE_TEXT:
        raise InputError(
            f"an edited article holds at most {MAX_TOPIC} characters of title and "
            f"{MAX_ARTICLE_TEXT:,} of text; this one has {len(title):,} and {len(body):,}"
        )
    article = lock_article(session, article_id, seen_version)
    prompt = article.prompt
    meta = {
        "model": article.model_name,
        "revision": article.model_revision,
        "preset": article.preset,
        "seed": article.seed,
        "words": len(body.split()),
        "perplexity": article.perplexity,
        "flags": list(article.flags),
        "tokens": article.tokens_generated,
        "finish_reason": article.finish_reason,
        "edited_by": actor,
    }
    text = article.prompt_text or prompt.prompt or prompt.topic
    context = article_context(title, body, prompt.topic, text, prompt.extra, meta)
    rendered, _ = render_article(templates, article.template_name or DEFAULT_TEMPLATE, context)
    save_edit(session, article, title, body, rendered, actor, _note(note))
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
        prompt = article.prompt
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
