"""Rendering the workspace's pages with articlegen's one sandboxed Jinja environment, and what
every page shares: the reviewer, the CSRF token, flash messages, security headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from articlegen.db.models import Article, ArticleReviewStatus
from articlegen.db.queue import ArticleFilter
from articlegen.export.records import kind_note
from articlegen.generator.postprocess import words
from articlegen.runs.context import RunContext
from articlegen.web.security import CurrentReviewer, csrf_token

__all__ = [
    "article_row",
    "flash",
    "queue_url",
    "redirect",
    "render",
    "security_headers",
]

MAX_FLASH = 300
# Scripts, styles and images come from this server alone; forms post back to it; nothing
# frames its pages. Prompt and model text is escaped anyway: this is the second wall.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'; object-src 'none'"
)


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Every response: a content security policy, no sniffing, no referrer leaks, no cache."""
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def flash(request: Request, message: str, kind: str = "info") -> None:
    """A message for the next page the reviewer sees (after a redirect)."""
    # Kept short: flashes travel in the session cookie, which a browser drops past 4 KB.
    text = message if len(message) <= MAX_FLASH else message[: MAX_FLASH - 1] + "…"
    # A new list, not an append: the session only notices keys that are assigned.
    request.session["flash"] = [
        *request.session.get("flash", [])[-4:],
        {"kind": kind, "text": text},
    ]


def redirect(url: str) -> RedirectResponse:
    """See other: after a POST, the browser GETs `url` (reloading never re-posts)."""
    return RedirectResponse(url, status_code=303)


def render(
    request: Request,
    page: str,
    reviewer: CurrentReviewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page `web/<page>.html.j2`, with what every page shows."""
    run_context: RunContext = request.app.state.context
    shared = {
        "reviewer": reviewer,
        "can_act": reviewer is not None and reviewer.can_act,
        "csrf_token": csrf_token(request),
        "messages": request.session.pop("flash", []),
        "path": request.url.path,
    }
    html = run_context.templates.render(f"web/{page}.html.j2", {**shared, **context}).text
    return HTMLResponse(html, status_code=status)


def queue_url(f: ArticleFilter, path: str = "/articles", **changes: Any) -> str:
    """The queue (or an article, with `path`) under filter `f`."""
    query = urlencode(f.as_params(**changes))
    return f"{path}?{query}" if query else path


def article_row(article: Article) -> dict[str, Any]:
    """What the queue and the article page show of an article, as plain values."""
    return {
        "id": article.id,
        "title": article.edited_title or article.title,
        "topic": article.prompt.topic,
        "external_id": article.prompt.external_id,
        "status": article.review_status.value,
        "status_label": STATUS_LABELS[article.review_status],
        "words": len(words(article.edited_body)) if article.edited_body else article.word_count,
        "perplexity": round(article.perplexity, 1) if article.perplexity is not None else None,
        "flags": list(article.flags),
        "model": article.model_name,
        # Shown as a badge: text of random weights must never pass for an article.
        "warning": kind_note(article.model_kind),
        "preset": article.preset,
        "job": article.job_id,
        "variant": article.variant,
        "version": article.version,
        "edited": article.edited_body is not None,
        "lock_version": article.lock_version,
        "created": f"{article.created_at:%Y-%m-%d %H:%M}",
    }


STATUS_LABELS: Mapping[ArticleReviewStatus, str] = {
    ArticleReviewStatus.PENDING_REVIEW: "Pending review",
    ArticleReviewStatus.APPROVED: "Approved",
    ArticleReviewStatus.REJECTED: "Rejected",
}
