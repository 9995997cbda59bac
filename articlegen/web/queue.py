"""The review queue: filters, search, sort, pages of 50, counts per status, and bulk verdicts on
the rows selected or on every article the filter holds (after a confirmation naming their
number)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from articlegen.core.describe import describe_validation_error
from articlegen.core.errors import ArticlegenError, InputError
from articlegen.db.models import ArticleReviewStatus
from articlegen.db.queue import SORTS, ArticleFilter, model_names, page
from articlegen.generator.metrics import FLAGS
from articlegen.review.actions import Snapshot, review_ids, review_matching, snapshot
from articlegen.runs.context import RunContext
from articlegen.web.pages import STATUS_LABELS, article_row, flash, queue_url, redirect, render
from articlegen.web.security import CurrentReviewer, Editor, Reader

__all__ = ["parse_filter", "router"]

router = APIRouter()
_FILTER_FIELDS = tuple(ArticleFilter.model_fields)
MAX_PAGE = 100_000


def parse_filter(values: dict[str, Any]) -> ArticleFilter:
    """The filter in a query string or a form (other fields ignored); `InputError` naming
    each bad value."""
    try:
        return ArticleFilter.model_validate(
            {k: v for k, v in values.items() if k in _FILTER_FIELDS}
        )
    except ValidationError as exc:
        raise InputError("; ".join(describe_validation_error(exc, _FILTER_FIELDS))) from None


def _options(context: RunContext) -> dict[str, Any]:
    with context.database.session(write=False) as session:
        models = model_names(session)
    return {
        "statuses": [(s.value, STATUS_LABELS[s]) for s in ArticleReviewStatus],
        "sorts": list(SORTS.items()),
        "flags": list(FLAGS),
        "presets": context.presets.names(),
        "models": models,
    }


@router.get("/")
def home(reviewer: Reader) -> Response:
    """The workspace opens on the articles waiting for review."""
    return redirect("/articles?status=pending_review")


@router.get("/articles")
def queue(
    request: Request,
    reviewer: Reader,
    number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    """A page of the queue under the filter in the query string."""
    context: RunContext = request.app.state.context
    try:
        f = parse_filter(dict(request.query_params))
    except ArticlegenError as exc:
        return render(
            request, "queue", reviewer, 400, error=str(exc), f=ArticleFilter(), rows=[],
            result=None, counts=[], pages=[], **_options(context),
        )  # fmt: skip
    with context.database.session(write=False) as session:
        result = page(session, f, number)
        rows = [
            {**article_row(a), "href": queue_url(f, f"/articles/{a.id}")} for a in result.articles
        ]
    counts = [
        (STATUS_LABELS[s], n, queue_url(f, status=s.value), f.status is s)
        for s, n in result.counts.items()
    ]
    pages = {
        "previous": queue_url(f, page=number - 1) if number > 1 else None,
        "next": queue_url(f, page=number + 1) if number < result.pages else None,
    }
    return render(
        request, "queue", reviewer, error=None, f=f, filter_fields=f.as_params(),
        rows=rows, result=result, counts=counts, pages=pages, all_count=result.total,
        **_options(context),
    )  # fmt: skip


@router.post("/articles/bulk")
async def bulk(request: Request, reviewer: Editor) -> Response:
    """Approve or reject the selected rows, or every article the filter holds."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    selected = [v for v in form.getlist("ids") if isinstance(v, str)]
    # The database work runs in a worker thread: thousands of rows must not hold up the server.
    return await run_in_threadpool(_bulk, request, reviewer, fields, selected)


def _bulk(
    request: Request, reviewer: CurrentReviewer, fields: dict[str, str], selected: list[str]
) -> Response:
    try:
        f = parse_filter(fields)
    except ArticlegenError as exc:
        flash(request, str(exc), "error")
        return redirect("/articles")
    back = queue_url(f)
    # One button per choice: approve-selected, reject-selected, approve-all, reject-all.
    verb, _, scope = fields.get("do", "").partition("-")
    verdicts = {"approve": ArticleReviewStatus.APPROVED, "reject": ArticleReviewStatus.REJECTED}
    verdict = verdicts.get(verb)
    if verdict is None or scope not in ("selected", "all"):
        flash(request, "choose one of the Approve or Reject buttons", "error")
        return redirect(back)
    note = fields.get("note") or None
    context: RunContext = request.app.state.context
    try:
        if scope == "all":
            return _all_matching(request, reviewer, f, verdict, note, fields)
        ids, seen = _selection(selected)
        with context.database.session() as session:
            done = review_ids(session, ids, verdict, reviewer.name, note, seen)
    except ArticlegenError as exc:
        flash(request, str(exc), "error")
        return redirect(back)
    flash(request, f"{STATUS_LABELS[verdict]}: {len(done)} article(s).")
    return redirect(back)


def _selection(values: list[str]) -> tuple[list[int], dict[int, int]]:
    """The selected rows' ids, and the version of each the reviewer saw: each checkbox is
    "id:version" (a bare id checks no version)."""
    ids: list[int] = []
    seen: dict[int, int] = {}
    for value in values:
        article, _, version = value.partition(":")
        try:
            if not (article + version).isascii():  # int() reads "٣" as 3
                raise ValueError(value)
            ids.append(int(article))
            if version:
                seen[ids[-1]] = int(version)
        except ValueError:
            shown = value[:40]
            raise InputError(f"the selection holds {shown!r}, which is not an article") from None
    if not ids:
        raise InputError("select at least one article, or act on all that match")
    return ids, seen


def _all_matching(
    request: Request,
    reviewer: CurrentReviewer,
    f: ArticleFilter,
    verdict: ArticleReviewStatus,
    note: str | None,
    fields: dict[str, str],
) -> Response:
    context: RunContext = request.app.state.context
    if fields.get("confirmed") != "yes":
        with context.database.session(write=False) as session:
            now = snapshot(session, f)
        return render(
            request, "confirm", reviewer, f=f, filter_fields=f.as_params(), count=now.count,
            digest=now.digest, action="approve" if verdict is ArticleReviewStatus.APPROVED
            else "reject", note=note or "", back=queue_url(f),
        )  # fmt: skip
    try:
        confirmed = Snapshot(int(fields.get("expected", "")), fields.get("digest", ""))
    except ValueError:
        raise InputError("the confirmation lost its count: confirm again") from None
    with context.database.session() as session:
        done = review_matching(session, f, verdict, reviewer.name, confirmed, note)
    flash(request, f"{STATUS_LABELS[verdict]}: all {done:,} article(s) that matched.")
    return redirect(queue_url(f))
