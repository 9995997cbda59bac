"""Commands for generation runs after the fact: list, show, cancel and resume jobs."""

from __future__ import annotations

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.generate import run_in_process
from articlegen.cli.options import JOB_ID, format_option
from articlegen.cli.output import render, show
from articlegen.cli.prefect_env import check_prefect_api
from articlegen.db.claims import reconcile
from articlegen.db.jobs import check_resumable, get_job, list_jobs, request_cancel
from articlegen.db.models import JobStatus
from articlegen.export.records import JOB_COLUMNS, job_record
from articlegen.runs import GenerateParams

__all__: list[str] = []


@cli.group(cls=Group, context_settings=CONTEXT)
def jobs() -> None:
    """Inspect, cancel and resume generation runs.

    Example: articlegen jobs list
    """


@jobs.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@format_option
@pass_app
def jobs_list(app: App, limit: int | None, fmt: str) -> None:
    """List jobs, newest first.

    Example: articlegen jobs list --format json
    """
    with app.database.session(write=False) as session:
        records = [job_record(j) for j in list_jobs(session, limit)]
    click.echo(render(records, fmt, table_columns=JOB_COLUMNS, empty="No jobs."))


@jobs.command("show")
@click.argument("job_id", type=JOB_ID)
@format_option
@pass_app
def jobs_show(app: App, job_id: int, fmt: str) -> None:
    """Show one job: status, counts, parameters, error.

    Example: articlegen jobs show 1
    """
    with app.database.session(write=False) as session:
        record = job_record(get_job(session, job_id))
    click.echo(show(record, fmt))


@jobs.command("cancel")
@click.argument("job_id", type=JOB_ID)
@pass_app
def jobs_cancel(app: App, job_id: int) -> None:
    """Stop a job: a running one stops before its next batch and gives back the prompts it
    has not written; a queued one is cancelled at once. Written articles stay.

    Example: articlegen jobs cancel 3
    """
    with app.database.session() as session:
        reconcile(session)  # a dead run's job is crashed, not something to cancel
        job = request_cancel(session, job_id)
        status = job.status
    if status is JobStatus.CANCELLED:
        click.echo(f"Job {job_id} cancelled before it started.")
    else:
        click.echo(
            f"Job {job_id} will stop before its next batch; the prompts it has not written go "
            f"back to pending. Watch it with `articlegen jobs show {job_id}`."
        )


@jobs.command("resume")
@click.argument("job_id", type=JOB_ID)
@pass_app
def jobs_resume(app: App, job_id: int) -> None:
    """Finish a crashed, failed or cancelled job: a new job, with its parameters, generates
    the prompts it had claimed and not written. Its written articles stay as they are.

    Example: articlegen jobs resume 3
    """
    check_prefect_api()  # before `reconcile` writes, or the new job's row
    with app.database.session() as session:
        reconcile(session)  # a run whose lease ran out is crashed now, and resumable
        job = check_resumable(session, job_id)
        parameters = dict(job.parameters)
    # The dead job's own claim already applied its limit, tags and shard.
    parameters.update(limit=None, tags=[], shard=0, shards=1, dry_run=False, resume_job=job_id)
    run_in_process(app, GenerateParams.model_validate(parameters))
