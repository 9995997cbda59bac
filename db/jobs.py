"""Job use cases: a generation run's row, from creation through live counts to its end."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from articlegen.errors import NotFoundError
from db.models import Job, JobStatus, utcnow

__all__ = ["create_job", "finish_job", "get_job", "list_jobs", "start_job"]


def create_job(session: Session, parameters: dict[str, Any], model: str | None) -> Job:
    """A new queued job; its id names the run everywhere (flow run name, artifacts)."""
    job = Job(status=JobStatus.QUEUED, parameters=parameters, model=model)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job, or `NotFoundError` naming the id."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}: `articlegen jobs list` shows the jobs there are")
    return job


def start_job(
    session: Session, job_id: int, total: int, model_revision: str | None, flow_run_id: str | None
) -> None:
    """Mark the job running with the number of articles it will write."""
    job = get_job(session, job_id)
    job.status = JobStatus.RUNNING
    job.total = total
    job.model_revision = model_revision
    job.flow_run_id = flow_run_id
    job.started_at = utcnow()


def finish_job(
    session: Session, job_id: int, error: str | None = None, cancelled: bool = False
) -> Job:
    """End the job: `cancelled` (stopped), `failed` (an error), else completed, with or
    without failed articles."""
    job = get_job(session, job_id)
    if cancelled:
        job.status = JobStatus.CANCELLED
        job.error = error
    elif error is not None:
        job.status = JobStatus.FAILED
        job.error = error
    elif job.failed:
        job.status = JobStatus.COMPLETED_WITH_ERRORS
    else:
        job.status = JobStatus.COMPLETED
    job.finished_at = utcnow()
    return job


def list_jobs(session: Session, limit: int | None = None) -> list[Job]:
    """Jobs, newest first."""
    query = select(Job).order_by(Job.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
