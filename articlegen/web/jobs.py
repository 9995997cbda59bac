"""Generation runs as the workspace shows them: recent jobs with live counts, and one job with
the prompts that failed and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from articlegen.core.bounds import MAX_ID
from articlegen.db.jobs import failed_prompts, get_job, list_jobs
from articlegen.db.models import Job
from articlegen.runs.context import RunContext
from articlegen.web.pages import render
from articlegen.web.security import Reader

__all__ = ["router"]

router = APIRouter()
RECENT = 50


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "model": job.model,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "created": f"{job.created_at:%Y-%m-%d %H:%M}",
        "finished": f"{job.finished_at:%Y-%m-%d %H:%M}" if job.finished_at else "",
    }


@router.get("/jobs")
def jobs_page(request: Request, reviewer: Reader) -> Response:
    """The recent jobs; their counts refresh by themselves while they run."""
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        rows = [_row(j) for j in list_jobs(session, RECENT)]
    return render(request, "jobs", reviewer, jobs=rows)


@router.get("/jobs.json")
def jobs_json(request: Request, reviewer: Reader) -> Response:
    """The recent jobs' statuses and counts, for the page's live updates."""
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        rows = [_row(j) for j in list_jobs(session, RECENT)]
    return JSONResponse(rows)


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: Annotated[int, Path(ge=1, le=MAX_ID)], reviewer: Reader
) -> Response:
    """One job: its parameters, its counts, and the prompts it failed, with the reasons."""
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        job = get_job(session, job_id)
        failures = [
            {"id": p.id, "external_id": p.external_id, "topic": p.topic, "error": p.last_error}
            for p in failed_prompts(session, job_id)
        ]
        view = {
            **_row(job),
            "error": job.error,
            "parameters": job.parameters,
            "revision": job.model_revision,
        }
    return render(request, "job", reviewer, job=view, failures=failures)
