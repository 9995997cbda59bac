"""Commands for generation runs after the fact: list, show, cancel and resume jobs."""

from __future__ import annotations

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.generate import run_in_process
from articlegen.cli.options import JOB_ID, format_option
from articlegen.cli.output import render, show
from articlegen.cli.prefect_env import check_prefect_api
from articlegen.core.bounds import MAX_ID
from articlegen.db.claims import reconcile
from articlegen.db.jobs import (
    check_resumable,
    get_job,
    list_jobs,
    request_cancel,
    settled_prompts,
)
from articlegen.db.models import JobStatus
from articlegen.export.records import JOB_COLUMNS, job_record
from articlegen.runs import (
    GenerateParams,
    check_model_fits,
    check_params,
    claimable,
)

__all__: list[str] = []


@cli.group(cls=Group, context_settings=CONTEXT)
def jobs() -> None:
    """Inspect, cancel and resume generation runs.

    Example: articlegen jobs list
    """


@jobs.command("list")
@click.option("--limit", type=click.IntRange(1, MAX_ID), help="At most this many, newest first.")
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
    """Stop a job: a running one stops within a decoding step, writes the articles it
    finished and gives back the prompts it has not written; a queued one is cancelled at
    once. Written articles stay.

    Example: articlegen jobs cancel 3
    """
    with app.database.session() as session:
        # A dead run's job is crashed, not something to cancel: its prompts go back now.
        crashed = job_id in reconcile(session, app.settings.max_attempts)
        if not crashed:
            status = request_cancel(session, job_id).status
    if crashed:
        click.echo(
            f"Job {job_id} had already stopped, so it is marked crashed (`articlegen jobs show "
            f"{job_id}` says why); its unfinished prompts went back to the queue."
        )
    elif status is JobStatus.CANCELLED:
        click.echo(f"Job {job_id} cancelled before it started.")
    else:
        click.echo(
            f"Job {job_id} will stop within a second: it writes the articles it finished, and "
            "the prompts it has not written go back to pending. Watch it with `articlegen jobs "
            f"show {job_id}`."
        )


@jobs.command("resume")
@click.argument("job_id", type=JOB_ID)
@pass_app
def jobs_resume(app: App, job_id: int) -> None:
    """Finish a crashed, failed or cancelled job (or a running one whose process is gone): a
    new job, with its parameters, writes the prompts it had claimed and not written first,
    then goes on through the queue as the job would have. Its written articles stay.

    Example: articlegen jobs resume 3
    """
    check_prefect_api()  # before `reconcile` writes, or the new job's row
    with app.database.session() as session:
        # A run whose process is gone, or whose lease ran out, is crashed now, and resumable.
        reconcile(session, app.settings.max_attempts)
        job = check_resumable(session, job_id)
        parameters = dict(job.parameters)
        limit = parameters.get("limit")
        if limit is not None:  # what the dead job settled counts against its limit
            limit = max(0, limit - settled_prompts(session, job_id))
    if limit == 0:
        click.echo(f"Nothing to resume: job {job_id} wrote as many prompts as its --limit.")
        return
    parameters.update(limit=limit, dry_run=False, resume_job=job_id)
    params = GenerateParams.model_validate(parameters)
    if not claimable(app.settings, params):  # said at once: no new job row, no Prefect run
        click.echo(
            f"Nothing to resume: job {job_id} left nothing to write (other runs may have "
            "written its prompts)."
        )
        return
    # What changed since (a preset, a template or the model gone, a template that now refuses
    # the framing) is said before the new job's row exists, as for `generate`.
    check_params(app.settings, params)
    check_model_fits(app.settings, params, app.context.model(params.model))
    run_in_process(app, params)
