"""Commands for runs and their results: generate, jobs, articles."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from articlegen import runner
from articlegen.cli.base import CONTEXT, App, Group, cli, format_option, parse_overrides, pass_app
from articlegen.errors import ConfigError
from articlegen.output import render
from articlegen.records import ARTICLE_COLUMNS, JOB_COLUMNS, article_record, job_record
from articlegen.runner import GenerateParams
from db.articles import get_article, list_articles
from db.claims import reconcile
from db.jobs import check_resumable, get_job, list_jobs, request_cancel
from db.models import ArticleReviewStatus, JobStatus, PromptStatus
from db.prompts import count_prompts
from generator.decoding import describe_error, validate_overrides

__all__: list[str] = []


def quiet_prefect(log_level: str = "CRITICAL") -> None:
    """Prefect as a local tool: no telemetry, servers on loopback, a quiet terminal.

    Interactive commands log at CRITICAL: errors reach the user once, as `Error: ...` from
    the CLI, where Prefect's engine would first log each with a traceback. Set before Prefect
    is imported; anything the user set wins.
    """
    for name, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_LOGGING_LEVEL": log_level,
        # The temporary server's first start on a new PREFECT_HOME migrates its database;
        # on two busy cores that can pass Prefect's 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }.items():
        os.environ.setdefault(name, value)


def show(record: dict[str, Any], fmt: str) -> str:
    """One record: a field/value table, or one CSV row, or one JSON object."""
    if fmt == "table":
        return render([{"field": k, "value": v} for k, v in record.items()], "table")
    text = render([record], fmt)
    return text.strip()[1:-1].strip() if fmt == "json" else text


# --- generate ---------------------------------------------------------------------------------


def _follow(app: App, job_id: int, done: threading.Event) -> None:
    """Draw a progress bar from the job row's live counts until `done` is set."""
    db = app.database

    def counts() -> tuple[int, int]:
        with db.session(write=False) as session:
            job = get_job(session, job_id)
            return job.total, job.done + job.failed

    total = 0
    while not total:  # the total is known once the run has claimed its prompts
        if done.wait(0.3):
            return
        total = counts()[0]
    stderr = sys.stderr
    with click.progressbar(length=total, label=f"Job {job_id}", file=stderr) as bar:
        while True:
            stop = done.wait(0.5)
            bar.update(counts()[1] - bar.pos)
            if stop:
                return


_RUN_OPTIONS = [
    click.option("--limit", type=click.IntRange(min=1), help="At most this many prompts."),
    click.option("--model", help="Hub id or local directory  [default: ARTICLEGEN_MODEL]"),
    click.option("--preset", help="Preset for prompts that name none  [default: nucleus]"),
    click.option(
        "--batch-size",
        type=click.IntRange(1, 512),
        help="Articles generated together  [default: chosen from the hardware, measured once "
        "per model and machine]",
    ),
    click.option(
        "--max-new-tokens",
        type=click.IntRange(1, 8192),
        help="Token limit for every article (overrides prompts and presets).",
    ),
    click.option("--template", help="Article template stem for prompts that name none."),
    click.option(
        "--variants",
        type=click.IntRange(1, 100),
        help="Articles per prompt, instead of each prompt's own count.",
    ),
    click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a decoding setting for every article; repeatable.",
    ),
    click.option("--tag", "tags", multiple=True, help="Only prompts with this tag; repeatable."),
    click.option(
        "--order",
        type=click.Choice(["priority", "fifo"]),
        default="priority",
        show_default=True,
        help="Highest priority first, or oldest first.",
    ),
]


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of a generation run, shared by `generate` and `fan-out`."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


def _checked_params(
    app: App,
    *,
    overrides: tuple[str, ...],
    max_new_tokens: int | None,
    tags: tuple[str, ...],
    **options: Any,
) -> GenerateParams:
    """The run's parameters from the options, with what can be checked before Prefect starts
    checked now: a message at once, not 25 failed prompts."""
    settings_overrides: dict[str, Any] = dict(parse_overrides(overrides))
    if max_new_tokens is not None:
        settings_overrides["max_new_tokens"] = max_new_tokens
    try:
        # Checked here first, so the message names the option the user typed.
        validate_overrides(settings_overrides)
    except ConfigError as exc:
        raise ConfigError(f"--set: {exc}; see `articlegen presets list` for the settings") from None
    try:
        params = GenerateParams(overrides=settings_overrides, tags=list(tags), **options)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe_error(e) for e in exc.errors())) from None
    if params.preset is not None:
        app.presets.get(params.preset)
    template = params.template
    if template is not None:
        from generator.templates import Templates

        names = Templates(app.settings.templates_dir).names()
        missing = [
            f"{template}{s}" for s in (".md.j2", ".html.j2") if f"{template}{s}" not in names
        ]
        if missing:
            raise ConfigError(
                f"--template {template}: no {' or '.join(missing)} in the templates "
                f"(available: {', '.join(names)})"
            )
    return params


@cli.command("generate", context_settings=CONTEXT)
@run_options
@click.option("--dry-run", is_flag=True, help="Report what would be generated; claim nothing.")
@pass_app
def generate(app: App, /, dry_run: bool, **options: Any) -> None:
    """Generate articles for pending prompts with the generate-articles Prefect flow.

    Runs locally (Prefect starts a temporary server) unless PREFECT_API_URL points at one.
    Each prompt's own decoding settings apply; --set and --max-new-tokens override them.

    Example: articlegen generate --limit 10 --preset precise --max-new-tokens 200
    """
    params = _checked_params(app, dry_run=dry_run, **options)
    if not dry_run:
        # The model loaded here is the one the in-process run uses: one load per process.
        from generator.loading import load_model

        load_model(runner.model_spec(app.settings, params.model))
    _run(app, params)


@cli.command("fan-out", context_settings=CONTEXT)
@run_options
@click.option(
    "--shards", type=click.IntRange(1, 1024), default=4, show_default=True, help="Runs to start."
)
@click.option(
    "--deployment",
    default="generate-articles/articlegen",
    show_default=True,
    help="The generate-articles deployment whose work pool runs the shards.",
)
@pass_app
def fan_out(app: App, /, shards: int, deployment: str, **options: Any) -> None:
    """Split the pending prompts into shards and generate each in its own run of a
    generate-articles deployment, which the work pool's workers pick up (on one machine or
    many); wait for them. Needs PREFECT_API_URL (see the README, "Running on several
    machines"). --limit applies per shard.

    Example: articlegen fan-out --shards 4 --max-new-tokens 200
    """
    params = _checked_params(app, **options)
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "fan-out starts runs on a work pool, which needs a Prefect server: set "
            "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) and start workers, as the README's "
            '"Running on several machines" shows'
        )
    quiet_prefect("WARNING")
    from flows.fan_out import fan_out as fan_out_flow

    result = fan_out_flow(params=params, shards=shards, deployment=deployment)
    click.echo(f"Fan-out: {shards} shard runs of {deployment} completed.")
    for run_id, state in result["runs"].items():
        click.echo(f"  {run_id}  {state}")
    click.echo("Next: articlegen jobs list")


def _run(app: App, params: GenerateParams) -> None:
    """Run generate-articles in this process with a progress bar, and report the outcome."""
    settings = app.settings
    quiet_prefect()
    # Imported here: Prefect takes seconds to import, and most commands never need it.
    from flows.generate import generate_articles

    job_id = runner.open_job(settings, params)
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(app, job_id, done), daemon=True)
    started = time.perf_counter()
    follower.start()
    try:
        result = generate_articles(params=params, job_id=job_id)
    finally:
        done.set()
        follower.join()
    seconds = time.perf_counter() - started
    if result.get("dry_run"):
        click.echo(
            f"Dry run: {result['prompts']} pending prompts would become {result['total']} "
            "articles. Nothing was claimed."
        )
        return
    if not result["total"]:
        if params.resume_job is not None:
            click.echo(
                f"Nothing to resume: job {params.resume_job} left no pending prompts (other "
                "runs may have written them)."
            )
            return
        with app.database.session(write=False) as session:
            counts = count_prompts(session)
        which = f" tagged {', '.join(params.tags)}" if params.tags else ""
        click.echo(
            f"Nothing to generate: no pending prompts{which} ({counts[PromptStatus.PENDING]} "
            f"pending, {counts[PromptStatus.DONE]} done, {counts[PromptStatus.FAILED]} failed). "
            "Import more with `articlegen import FILE`."
        )
        return
    resumed = f" (resuming job {params.resume_job})" if params.resume_job else ""
    click.echo(
        f"Job {job_id} {result['status']}{resumed}: {result['done']} of {result['total']} "
        f"articles written, {result['failed']} failed, in {seconds:.1f} s.\n"
        f"Next: articlegen articles list --job {job_id}"
    )


# --- jobs -------------------------------------------------------------------------------------


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
@click.argument("job_id", type=int)
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
@click.argument("job_id", type=int)
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
@click.argument("job_id", type=int)
@pass_app
def jobs_resume(app: App, job_id: int) -> None:
    """Finish a crashed, failed or cancelled job: a new job, with its parameters, generates
    the prompts it had claimed and not written. Its written articles stay as they are.

    Example: articlegen jobs resume 3
    """
    with app.database.session() as session:
        reconcile(session)  # a run whose lease ran out is crashed now, and resumable
        job = check_resumable(session, job_id)
        parameters = dict(job.parameters)
    # The dead job's own claim already applied its limit, tags and shard.
    parameters.update(limit=None, tags=[], shard=0, shards=1, dry_run=False, resume_job=job_id)
    _run(app, GenerateParams.model_validate(parameters))


# --- articles ---------------------------------------------------------------------------------


@cli.group(cls=Group, context_settings=CONTEXT)
def articles() -> None:
    """Inspect generated articles.

    Example: articlegen articles list --status pending_review
    """


@articles.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in ArticleReviewStatus]),
    help="Only articles with this review status.",
)
@click.option("--job", "job_id", type=int, help="Only articles of this job.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@format_option
@pass_app
def articles_list(
    app: App, status: str | None, job_id: int | None, limit: int | None, fmt: str
) -> None:
    """List articles, oldest first.

    Example: articlegen articles list --job 1 --format csv
    """
    verdict = ArticleReviewStatus(status) if status else None
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session, verdict, job_id, limit)]
    click.echo(render(records, fmt, table_columns=ARTICLE_COLUMNS, empty="No articles."))


@articles.command("show")
@click.argument("article_id", type=int)
@format_option
@pass_app
def articles_show(app: App, article_id: int, fmt: str) -> None:
    """Show one article: the text as Markdown, then its metadata (table), or every field.

    Example: articlegen articles show 3 --format json
    """
    with app.database.session(write=False) as session:
        record = article_record(get_article(session, article_id))
    if fmt == "table":
        click.echo(record["markdown"] or record["body"])
        fields = {k: v for k, v in record.items() if k not in ("body", "markdown", "html")}
        click.echo(show(fields, fmt))
    else:
        click.echo(show(record, fmt))


# --- serve ------------------------------------------------------------------------------------


@cli.command("serve", context_settings=CONTEXT)
@pass_app
def serve(app: App) -> None:
    """Serve both flows as Prefect deployments until stopped (Ctrl-C or SIGTERM).

    generate-articles/articlegen runs on ARTICLEGEN_SCHEDULE (default hourly);
    import-prompts/articlegen runs when started. Point PREFECT_API_URL at a Prefect server
    (`prefect server start`) to see them in its UI and start runs with custom parameters.

    Example: articlegen serve
    """
    quiet_prefect("WARNING")  # a long-running server: keep Prefect's warnings
    # Imported here: Prefect takes seconds to import, and most commands never need it.
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from flows import generate_articles, import_prompts

    schedule = app.settings.schedule
    try:
        deployments = [
            generate_articles.to_deployment(name="articlegen", cron=schedule),
            import_prompts.to_deployment(name="articlegen"),
        ]
    except ValueError as exc:
        raise ConfigError(
            f"ARTICLEGEN_SCHEDULE={schedule!r} is not a cron schedule: use five fields, e.g. "
            "'0 * * * *' for hourly or '30 2 * * *' for 02:30 every night"
        ) from exc
    assert all(isinstance(d, RunnerDeployment) for d in deployments)  # the sync API
    click.echo(f"Serving generate-articles (cron {schedule!r}) and import-prompts; Ctrl-C stops.")
    prefect_serve(*deployments)  # type: ignore[arg-type]
