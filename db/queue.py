"""The review queue: articles filtered, searched, sorted and paged in SQL.

`ArticleFilter` is validated once where it enters (the workspace's query string or form); every
query of the queue is built from it by `_conditions`, so a page, the counts per status, an
article's neighbours and the articles a bulk action takes always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, func, or_, select, tuple_
from sqlalchemy.orm import Session, joinedload

from articlegen.core.bounds import MAX_EXTERNAL_ID, MAX_ID, MAX_NAME, MAX_SEARCH
from articlegen.db import search
from articlegen.db.backends import json_has_any
from articlegen.db.models import Article, ArticleReviewStatus, Prompt

__all__ = [
    "PER_PAGE",
    "SORTS",
    "ArticleFilter",
    "QueuePage",
    "matching",
    "model_names",
    "neighbours",
    "page",
]

PER_PAGE = 50
Sort = Literal["newest", "oldest", "perplexity", "words", "flags"]
SORTS: dict[str, str] = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "perplexity": "Highest perplexity first",
    "words": "Fewest words first",
    "flags": "Most flags first",
}


class ArticleFilter(BaseModel):
    """Which articles the queue shows, and in what order. Empty values mean "any"."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    status: ArticleReviewStatus | None = Field(default=None, description="Review status.")
    job: int | None = Field(default=None, ge=1, le=MAX_ID, description="Written by this job.")
    flag: str | None = Field(
        default=None, max_length=50, pattern=r"^[a-z_]+$", description="Has this quality flag."
    )
    tag: str | None = Field(default=None, max_length=100, description="Its prompt has this tag.")
    model: str | None = Field(default=None, max_length=500, description="Written by this model.")
    preset: str | None = Field(default=None, max_length=MAX_NAME, description="With this preset.")
    prompt: str | None = Field(
        default=None,
        max_length=MAX_EXTERNAL_ID,
        description="Its prompt's id, or the client's external id.",
    )
    q: str | None = Field(
        default=None,
        max_length=MAX_SEARCH,
        description="Words of the title and text (generated or edited), or of the topic; each "
        "word also matches as the start of a longer one.",
    )
    sort: Sort = Field(default="newest", description="Order of the queue.")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_any(cls, value: Any) -> Any:
        # An HTML form sends every field, the empty ones as "".
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("holds a NUL character, which no article has")
        return None if isinstance(value, str) and not value.strip() else value

    def as_params(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (only those set), with `changes` applied."""
        values = {**self.model_dump(mode="json", exclude_defaults=True), **changes}
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue, the number of articles the filter matches, and how many of
    them are in each review status (the counts ignore the filter's own status)."""

    articles: list[Article]
    number: int
    total: int
    counts: dict[ArticleReviewStatus, int]

    @property
    def pages(self) -> int:
        """How many pages the filter's articles fill (at least one)."""
        return max(1, -(-self.total // PER_PAGE))


def _conditions(session: Session, f: ArticleFilter, status: bool = True) -> list[Any]:
    """The filter as SQL conditions on `articles` (without the status when `status` is off)."""
    dialect = session.get_bind().dialect.name
    where: list[Any] = []
    if status and f.status is not None:
        where.append(Article.review_status == f.status)
    if f.job is not None:
        where.append(Article.job_id == f.job)
    if f.flag is not None:
        where.append(json_has_any(dialect, Article.flags, [f.flag]))
    if f.model is not None:
        where.append(Article.model_name == f.model)
    if f.preset is not None:
        where.append(Article.preset == f.preset)
    on_prompt: list[Any] = []
    if f.tag is not None:
        on_prompt.append(json_has_any(dialect, Prompt.tags, [f.tag]))
    if f.prompt is not None:
        # Digits (ASCII ones: "²" is a digit to Python, not to int()) may be a prompt's id.
        numeric = f.prompt.isascii() and f.prompt.isdigit() and int(f.prompt) <= MAX_ID
        by_id = [Prompt.id == int(f.prompt)] if numeric else []
        on_prompt.append(or_(Prompt.external_id == f.prompt, *by_id))
    if on_prompt:
        where.append(Article.prompt_id.in_(select(Prompt.id).where(*on_prompt)))
    if f.q is not None:
        where.append(search.matches(dialect, f.q))
    return where


def _order(sort: Sort) -> tuple[list[Any], bool]:
    """The sort's key columns (the id last, so the order is total) and whether it descends.

    Missing measures sort last: they are coalesced to a value past every real one.
    """
    if sort == "newest":
        return [Article.id], True
    if sort == "oldest":
        return [Article.id], False
    if sort == "perplexity":
        return [func.coalesce(Article.perplexity, -1.0), Article.id], True
    if sort == "words":
        return [func.coalesce(Article.word_count, MAX_ID), Article.id], False
    return [Article.flag_count, Article.id], True


def _sorted(query: Select[Any], sort: Sort) -> Select[Any]:
    keys, descending = _order(sort)
    return query.order_by(*(k.desc() if descending else k.asc() for k in keys))


def page(session: Session, f: ArticleFilter, number: int = 1) -> QueuePage:
    """Page `number` (from 1) of the filter's articles, with its prompt loaded."""
    where = _conditions(session, f)
    # The page's ids first, then their rows: sorting ids (and the sort keys, from indexes)
    # instead of whole articles keeps the texts out of the sort.
    chosen = _sorted(select(Article.id).where(*where), f.sort)
    ids = list(session.scalars(chosen.limit(PER_PAGE).offset((number - 1) * PER_PAGE)))
    rows = session.scalars(
        select(Article).where(Article.id.in_(ids)).options(joinedload(Article.prompt))
    )
    by_id = {article.id: article for article in rows}
    counts = dict.fromkeys(ArticleReviewStatus, 0)
    by_status = (
        select(Article.review_status, func.count())
        .where(*_conditions(session, f, status=False))
        .group_by(Article.review_status)
    )
    for status, n in session.execute(by_status):
        counts[status] = n
    total = counts[f.status] if f.status is not None else sum(counts.values())
    return QueuePage([by_id[i] for i in ids], number, total, counts)


def neighbours(
    session: Session, f: ArticleFilter, article: Article
) -> tuple[int | None, int | None]:
    """The ids before and after `article` in the filter's order (None at either end, and
    for an article the filter does not hold)."""
    where = _conditions(session, f)
    keys, descending = _order(f.sort)
    position = session.execute(select(*keys).where(Article.id == article.id, *where)).one_or_none()
    if position is None:
        return None, None
    here = tuple_(*keys)
    mark = tuple_(*position)
    after = here < mark if descending else here > mark
    before = here > mark if descending else here < mark
    following = _sorted(select(Article.id).where(*where, after), f.sort).limit(1)
    earlier = select(Article.id).where(*where, before)
    # The nearest earlier row comes first in the reversed order.
    earlier = earlier.order_by(*(k.asc() if descending else k.desc() for k in keys)).limit(1)
    return session.scalar(earlier), session.scalar(following)


def model_names(session: Session, most: int = 50) -> list[str]:
    """The models articles were written with (an index answers it), for the queue's filter."""
    query = select(Article.model_name).distinct().order_by(Article.model_name).limit(most)
    return list(session.scalars(query))


def matching(session: Session, f: ArticleFilter) -> Select[Any]:
    """The ids of every article the filter holds, as a subquery for a bulk action."""
    return select(Article.id).where(*_conditions(session, f))
