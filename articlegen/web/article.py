"""One article: read it with everything about it, approve, reject, edit then approve,
regenerate, compare versions, and move to the next or previous article of the queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_ARTICLE_TEXT, MAX_ID, MAX_NOTE, MAX_TOPIC
from articlegen.core.errors import ArticlegenError, ConflictError, InputError, NotFoundError
from articlegen.db.articles import get_article
from articlegen.db.models import Article
from articlegen.db.queue import ArticleFilter, neighbours
from articlegen.db.review import events_of, versions_of
from articlegen.export.records import event_record
from articlegen.generator.decoding import parse_overrides, split_assignments
from articlegen.generator.postprocess import split_paragraphs
from articlegen.review.actions import approve, edit_and_approve, regenerate, reject
from articlegen.review.diff import word_diff
from articlegen.runs.context import RunContext
from articlegen.web.pages import article_row, flash, queue_url, redirect, render
from articlegen.web.queue import parse_filter
from articlegen.web.security import CurrentReviewer, Editor, Reader

__all__ = ["router"]

router = APIRouter()
ArticleId = Annotated[int, Path(ge=1, le=MAX_ID)]
Note = Annotated[str, Form(max_length=MAX_NOTE)]
# The queue the reviewer came from, as its query string: next and previous follow it.
Queue = Annotated[str, Form(max_length=4000)]


def _queue(request: Request, query: str | None = None) -> ArticleFilter:
    """The queue the reviewer came from: in the URL, or in a form's `queue` field."""
    values = dict(parse_qsl(query)) if query is not None else dict(request.query_params)
    try:
        return parse_filter(values)
    except ArticlegenError:
        return ArticleFilter()


@router.get("/articles/{article_id}")
def article_page(request: Request, article_id: ArticleId, reviewer: Reader) -> Response:
    """The article, its prompt, its metadata, its history and its versions."""
    context: RunContext = request.app.state.context
    f = _queue(request)
    with context.database.session(write=False) as session:
        article = get_article(session, article_id)
        before, after = neighbours(session, f, article)
        prompt = article.prompt
        view: dict[str, Any] = {
            **article_row(article),
            "paragraphs": split_paragraphs(article.edited_body or article.body),
            "generated_title": article.title,
            "generated_paragraphs": split_paragraphs(article.body),
            "edited_by": article.edited_by,
            "edited_at": f"{article.edited_at:%Y-%m-%d %H:%M} UTC" if article.edited_at else None,
            "note": article.reviewer_note,
            "prompt_text": article.prompt_text or prompt.prompt,
            "extra": dict(prompt.extra),
            "tags": list(prompt.tags),
            "prompt_id": prompt.id,
            "metadata": _metadata(article),
            "decoding": dict(article.decoding),
        }
        events = [event_record(e) for e in events_of(session, article_id)]
        # The note was written by whoever last gave one (a verdict without a note keeps it).
        view["note_by"] = next((e["actor"] for e in reversed(events) if e["note"]), None)
        versions = [
            {"id": v.id, "version": v.version, "status": v.review_status.value}
            for v in versions_of(session, article)
        ]
    return render(
        request, "article", reviewer, a=view, events=events, versions=versions,
        queue=queue_url(f), queue_query=queue_url(f, path=""),
        previous=queue_url(f, f"/articles/{before}") if before else None,
        next=queue_url(f, f"/articles/{after}") if after else None,
        presets=context.presets.names(),
    )  # fmt: skip


def _metadata(article: Article) -> list[tuple[str, Any]]:
    metrics = article.metrics
    return [
        ("Model", article.model_name),
        ("Revision", article.model_revision),
        ("Model kind", article.model_kind.value if article.model_kind else None),
        ("Preset", article.preset),
        ("Prompt format", article.prompt_format),
        ("Seed", article.seed),
        ("Prompt tokens", article.prompt_tokens),
        ("Tokens generated", article.tokens_generated),
        ("Finish reason", article.finish_reason),
        ("Perplexity", round(article.perplexity, 2) if article.perplexity is not None else None),
        ("Words (generated)", article.word_count),
        ("Distinct-2", _rounded(metrics.get("distinct_2"))),
        ("Flags", ", ".join(article.flags) or "none"),
        ("Template", f"{article.template_name} ({article.template_version})"),
        ("Job", article.job_id),
        ("Variant / version", f"{article.variant} / {article.version}"),
        ("Generation seconds", _rounded(article.generation_seconds)),
        ("Written", f"{article.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


@router.get("/articles/{article_id}/html")
def rendered_html(request: Request, article_id: ArticleId, reviewer: Reader) -> Response:
    """The article as its HTML template rendered it (the edited one, once edited), served so
    that nothing in it can run: a sandbox with no scripts, framed by the article page only."""
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        article = get_article(session, article_id)
        html = (article.edited_rendered or article.rendered).get("html") or ""
    response = HTMLResponse(html)
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
    )
    return response


def _done(
    request: Request, f: ArticleFilter, message: str, after: int | None, here: int
) -> Response:
    """On to the next article of the queue, or back to this one at the queue's end."""
    flash(request, message)
    return redirect(queue_url(f, f"/articles/{after or here}"))


def _failed(request: Request, exc: ArticlegenError, f: ArticleFilter, here: int) -> Response:
    flash(request, str(exc), "error")
    return redirect(queue_url(f, f"/articles/{here}"))


def _next_of(request: Request, f: ArticleFilter, article_id: int) -> int | None:
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        try:
            return neighbours(session, f, get_article(session, article_id))[1]
        except NotFoundError:
            return None


def _review(
    request: Request,
    article_id: int,
    queue: str,
    act: Callable[[Session], object],
    message: str,
) -> Response:
    """Do `act` in one transaction, then on to the next article of the queue."""
    f = _queue(request, queue)
    following = _next_of(request, f, article_id)
    try:
        with request.app.state.context.database.session() as session:
            act(session)
    except ArticlegenError as exc:
        return _failed(request, exc, f, article_id)
    return _done(request, f, message, following, article_id)


@router.post("/articles/{article_id}/approve")
def approve_article(
    request: Request,
    article_id: ArticleId,
    reviewer: Editor,
    version: Annotated[int, Form()],
    note: Note = "",
    queue: Queue = "",
) -> Response:
    """Approve, then on to the next article."""
    return _review(
        request,
        article_id,
        queue,
        lambda session: approve(session, article_id, reviewer.name, note or None, version),
        f"Approved article {article_id}.",
    )


@router.post("/articles/{article_id}/reject")
def reject_article(
    request: Request,
    article_id: ArticleId,
    reviewer: Editor,
    version: Annotated[int, Form()],
    reason: Note = "",
    queue: Queue = "",
) -> Response:
    """Reject with a reason, then on to the next article."""
    return _review(
        request,
        article_id,
        queue,
        lambda session: reject(session, article_id, reviewer.name, reason, version),
        f"Rejected article {article_id}.",
    )


@router.get("/articles/{article_id}/edit")
def edit_page(request: Request, article_id: ArticleId, reviewer: Reader) -> Response:
    """The editor: the current text (the editor's, once edited) in a form."""
    if not reviewer.can_act:
        raise HTTPException(403, f"{reviewer.name} is a viewer: only editors may edit.")
    return _editor(request, reviewer, article_id, _queue(request))


def _editor(
    request: Request,
    reviewer: CurrentReviewer,
    article_id: int,
    f: ArticleFilter,
    typed: tuple[str, str] | None = None,
    error: ArticlegenError | None = None,
) -> Response:
    """The edit form: the stored text, or (after a refused save) the editor's own, kept."""
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        article = get_article(session, article_id)
        view = {**article_row(article), "body": article.edited_body or article.body}
    if typed is not None:
        view["title"], view["body"] = typed
    status = 409 if isinstance(error, ConflictError) else 400 if error else 200
    return render(
        request, "edit", reviewer, status, a=view, queue=queue_url(f, path=""),
        back=queue_url(f, f"/articles/{article_id}"), error=str(error) if error else None,
    )  # fmt: skip


@router.post("/articles/{article_id}/edit")
def save_edit(
    request: Request,
    article_id: ArticleId,
    reviewer: Editor,
    version: Annotated[int, Form()],
    title: Annotated[str, Form(max_length=MAX_TOPIC * 2)] = "",
    body: Annotated[str, Form(max_length=MAX_ARTICLE_TEXT * 2)] = "",
    note: Note = "",
    queue: Queue = "",
) -> Response:
    """Keep the editor's text beside the generated one, and approve the article."""
    context: RunContext = request.app.state.context
    f = _queue(request, queue)
    try:
        with context.database.session() as session:
            edit_and_approve(
                session, context.templates, article_id, reviewer.name, title, body, version,
                note or None,
            )  # fmt: skip
    except ArticlegenError as exc:
        # The form again, with the editor's text in it: nothing typed is lost.
        return _editor(request, reviewer, article_id, f, (title, body), exc)
    flash(request, f"Saved your text and approved article {article_id}.")
    return redirect(queue_url(f, f"/articles/{article_id}"))


@router.post("/articles/{article_id}/regenerate")
def regenerate_article(
    request: Request,
    article_id: ArticleId,
    reviewer: Editor,
    preset: Annotated[str, Form(max_length=100)] = "",
    settings: Annotated[str, Form(max_length=4000)] = "",
    queue: Queue = "",
) -> Response:
    """Queue a new version, with a preset or settings ("NAME=VALUE" per line) if given."""
    context: RunContext = request.app.state.context
    f = _queue(request, queue)
    try:
        try:
            pairs = split_assignments(settings.splitlines())
        except InputError as exc:
            raise InputError(f"settings, line {exc}") from None
        if "\x00" in settings:
            raise InputError("the settings hold a NUL character: remove it")
        overrides = parse_overrides(pairs, where="settings: ")
        with context.database.session() as session:
            regenerate(
                session, context.presets, [article_id], reviewer.name, preset or None, overrides
            )
    except ArticlegenError as exc:
        return _failed(request, exc, f, article_id)
    flash(
        request,
        f"Queued a new version of article {article_id}: the next `articlegen generate` (or "
        "scheduled run) writes it.",
    )
    return redirect(queue_url(f, f"/articles/{article_id}"))


@router.get("/articles/{article_id}/diff")
def diff_page(
    request: Request,
    article_id: ArticleId,
    reviewer: Reader,
    against: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Word by word, side by side: this article against another version of its variant, or
    (without `against`) its edited text against the generated one."""
    context: RunContext = request.app.state.context
    f = _queue(request)
    with context.database.session(write=False) as session:
        article = get_article(session, article_id)
        if against is None:
            if article.edited_body is None:
                raise NotFoundError(f"article {article_id} has no edited text to compare")
            left_label, left = f"Generated (version {article.version})", article.body
            right_label, right = f"Edited by {article.edited_by}", article.edited_body
        else:
            other = get_article(session, against)
            if (other.prompt_id, other.variant) != (article.prompt_id, article.variant):
                raise NotFoundError(
                    f"article {against} is not a version of article {article_id}'s variant"
                )
            older, newer = sorted((other, article), key=lambda a: a.version)
            left_label, left = f"Version {older.version} (article {older.id})", older.body
            right_label, right = f"Version {newer.version} (article {newer.id})", newer.body
        title = article.edited_title or article.title
    return render(
        request, "diff", reviewer, diff=word_diff(left, right), left_label=left_label,
        right_label=right_label, title=title, back=queue_url(f, f"/articles/{article_id}"),
        article_id=article_id,
    )  # fmt: skip
