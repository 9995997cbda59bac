"""Job use cases: a generation run's row, from creation through live counts to its end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from articlegen.core.errors import JobStateError, NotFoundError
from articlegen.core.process import current
from articlegen.db.models import Job, JobStatus, Prompt, PromptStatus, utcnow

__all__ = [
    "add_claimed",
    "check_resumable",
    "create_job",
    "failed_prompts",
    "finish_job",
    "get_job",
    "list_jobs",
    "record_model",
    "request_cancel",
    "settled_prompts",
    "start_job",
]


def create_job(session: Session, parameters: dict[str, Any], model: str | None) -> Job:
    """A new queued job, owned by this process; its id names the run everywhere (flow run
    name, artifacts)."""
    job = Job(status=JobStatus.QUEUED, parameters=parameters, model=model)
    _own(job)
    session.add(job)
    session.flush()
    return job


def _own(job: Job) -> None:
    """Record this process as the one running `job` (`core.process`)."""
    process = current()
    job.host, job.pid, job.process_started = process.host, process.pid, process.started


def get_job(session: Session, job_id: int) -> Job:
    """The job, or `NotFoundError` naming the id."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}: `articlegen jobs list` shows the jobs there are")
    return job


def start_job(session: Session, job_id: int, flow_run_id: str | None, lease: timedelta) -> None:
    """Mark the job running in this process, alive for `lease` (renewed by the run). Its
    total grows as it claims (`add_claimed`), and loses, at the end, a batch it claimed ahead
    and never generated. A job cancelled while it was queued stays cancelled: its run claims
    nothing (a run claims only while its job runs) and ends at once."""
    job = get_job(session, job_id)
    job.flow_run_id = flow_run_id  # even a cancelled one's: its run and artifacts are there
    if job.status is JobStatus.CANCELLED:
        return
    job.status = JobStatus.RUNNING
    job.started_at = utcnow()
    job.lease_expires_at = job.started_at + lease
    _own(job)


def add_claimed(session: Session, job_id: int, articles: int) -> None:
    """Count `articles` more on the job's total: it claimed their prompts (fewer, when
    negative: it gives back prompts it claimed and never started)."""
    get_job(session, job_id).total += articles


def record_model(session: Session, job_id: int, name: str, revision: str) -> None:
    """Note the model a job generates with, and its exact revision (Hub commit or digest of a
    local directory), once it is loaded."""
    job = get_job(session, job_id)
    job.model = name
    job.model_revision = revision


# A job in one of these has ended; only the first three leave work to resume.
_RESUMABLE = (JobStatus.CRASHED, JobStatus.FAILED, JobStatus.CANCELLED)
_ENDED = (*_RESUMABLE, JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS)


def check_resumable(session: Session, job_id: int) -> Job:
    """The job, if a new run may finish its work: it crashed, failed or was cancelled.

    Raises `JobStateError` naming its status and what to do otherwise.
    """
    job = get_job(session, job_id)
    if job.status in _RESUMABLE:
        return job
    if job.status is JobStatus.RUNNING:
        until = f"{job.lease_expires_at:%H:%M:%S} UTC" if job.lease_expires_at else "its lease ends"
        where = f"pid {job.pid} on {job.host}" if job.host else "its process"
        raise JobStateError(
            f"job {job_id} is running ({where}, its lease runs until {until}): to stop it, "
            f"`articlegen jobs cancel {job_id}`; if it runs on another machine that died, "
            "resume it once the lease has run out"
        )
    raise JobStateError(
        f"job {job_id} is {job.status.value}: there is nothing of it to resume (only crashed, "
        "failed or cancelled jobs can be resumed)"
    )


def request_cancel(session: Session, job_id: int) -> Job:
    """Stop a job: a running one stops within one decoding step (its run writes what it
    finished and releases the rest); a queued one is cancelled at once. Raises
    `JobStateError` for an ended job."""
    job = get_job(session, job_id)
    if job.status in _ENDED:
        raise JobStateError(
            f"job {job_id} has already ended ({job.status.value}): nothing to cancel"
        )
    if job.status is JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.error = "cancelled before it started"
        job.finished_at = utcnow()
    job.cancel_requested = True
    return job


def finish_job(
    session: Session, job_id: int, error: str | None = None, cancelled: bool = False
) -> Job:
    """End the job: `cancelled` (stopped), `failed` (an error), else completed, with or
    without failed articles. A job marked crashed meanwhile stays crashed, and one cancelled
    while it was queued stays cancelled."""
    job = get_job(session, job_id)
    if job.status in (JobStatus.CRASHED, JobStatus.CANCELLED):
        # Crashed: its lease ran out while it worked (the database was out of reach longer
        # than the lease) and a run marked it so and took its prompts. Cancelled: while it
        # was queued (`request_cancel`), and its run took nothing. Either stays as it is, with
        # its reason and time.
        job.lease_expires_at = None
        return job
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
    job.lease_expires_at = None
    return job


def failed_prompts(session: Session, job_id: int) -> list[Prompt]:
    """The prompts the job failed, still failed (each has its reason in `last_error`)."""
    query = select(Prompt).where(Prompt.claimed_by == job_id, Prompt.status == PromptStatus.FAILED)
    return list(session.scalars(query.order_by(Prompt.id)))


def settled_prompts(session: Session, job_id: int) -> int:
    """How many prompts the job wrote or failed (and no later run took up again)."""
    settled = (PromptStatus.DONE, PromptStatus.FAILED)
    query = select(func.count()).where(Prompt.claimed_by == job_id, Prompt.status.in_(settled))
    return int(session.scalar(query) or 0)


def list_jobs(session: Session, limit: int | None = None) -> list[Job]:
    """Jobs, newest first."""
    query = select(Job).order_by(Job.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
