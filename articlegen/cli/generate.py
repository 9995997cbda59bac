"""Commands that run generation: `generate` (in this process) and `fan-out` (on a work pool)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from types import FrameType
from typing import Any

import click
from pydantic import ValidationError

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.options import run_options, typed_overrides
from articlegen.cli.prefect_env import check_prefect_api, quiet_prefect
from articlegen.cli.progress import follow, working
from articlegen.core.bounds import MAX_SHARDS
from articlegen.core.describe import describe_error
from articlegen.core.errors import ConfigError
from articlegen.core.interrupts import interrupted
from articlegen.db.models import PromptStatus
from articlegen.db.prompts import count_prompts
from articlegen.generator.chat import parse_style
from articlegen.runs import (
    GenerateParams,
    RunProgress,
    batch_size_known,
    check_model_fits,
    check_params,
    choose_batch_size,
    claimable,
    frames_prompts,
    open_job,
    progress_for,
)

__all__ = ["run_in_process"]


def _checked_params(
    app: App,
    *,
    overrides: dict[str, str],
    max_new_tokens: int | None,
    tags: tuple[str, ...],
    prompt_format: str | None,
    system: str | None,
    **options: Any,
) -> GenerateParams:
    """The run's parameters from the options, with what can be checked before Prefect starts
    checked now: a message at once, not 25 failed prompts."""
    typed = typed_overrides(overrides, max_new_tokens)
    style = parse_style({"prompt_format": prompt_format, "system": system}, clears=True)
    try:
        params = GenerateParams(overrides=typed, tags=list(tags), style=style, **options)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe_error(e) for e in exc.errors())) from None
    check_params(app.settings, params)
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
    # Nothing to do is said at once: no Prefect server, no model, no job row. A resume keeps
    # its own checks (the job's state), which the flow reports.
    if not dry_run and params.resume_job is None and not claimable(app.settings, params):
        _nothing_to_generate(app, params)
        return
    check_prefect_api()  # before the model loads and the job row is written
    if dry_run and frames_prompts(app.settings, params):
        # A dry run plans without the model, but framing that would fail is said before the
        # run's job row exists, as for a real run.
        check_model_fits(app.settings, params, app.context.model(params.model))
    if not dry_run:
        # The model loaded here is the one the in-process run uses: one load per process. The
        # batch size is fixed here too, where a spinner can say why the first run waits.
        name = params.model or app.settings.model
        with working(f"Loading model {name}…"):
            loaded = app.context.model(params.model)
        check_model_fits(app.settings, params, loaded)
        if loaded.random_weights:
            click.echo(
                f"Note: {loaded.name} has random weights (`articlegen models init`): its "
                "articles will be noise, and are marked so everywhere.",
                err=True,
            )
        if params.batch_size is None:
            sentence = (
                f"Measuring the best batch size for {loaded.name} on {loaded.device.type} "
                "(once per model and machine, then cached)…"
            )
            measuring = not batch_size_known(loaded, app.settings)
            with working(sentence, log=True) if measuring else nullcontext():
                params = choose_batch_size(app.settings, params)
    run_in_process(app, params)


def _nothing_to_generate(app: App, params: GenerateParams) -> None:
    with app.database.session(write=False) as session:
        counts = count_prompts(session)
    which = f" tagged {', '.join(params.tags)}" if params.tags else ""
    click.echo(
        f"Nothing to generate: no pending prompts{which} ({counts[PromptStatus.PENDING]} "
        f"pending, {counts[PromptStatus.DONE]} done, {counts[PromptStatus.FAILED]} failed). "
        "Import more with `articlegen import FILE`."
    )


@cli.command("fan-out", context_settings=CONTEXT)
@run_options
@click.option(
    "--runs",
    type=click.IntRange(1, MAX_SHARDS),
    default=4,
    show_default=True,
    help="Runs to start; they share the queue.",
)
@click.option(
    "--sharded",
    is_flag=True,
    help="Give each run its own shard of the prompts (by id) instead of a shared queue.",
)
@click.option(
    "--deployment",
    default="generate-articles/articlegen",
    show_default=True,
    help="The generate-articles deployment whose work pool runs the shards.",
)
@pass_app
def fan_out(app: App, /, runs: int, sharded: bool, deployment: str, **options: Any) -> None:
    """Start several runs of a generate-articles deployment, which the work pool's workers
    pick up (on one machine or many), and wait for them. The runs pull batches from one
    shared queue, so they finish together. Needs PREFECT_API_URL (see the README, "Running on
    several machines"). --limit applies per run.

    Example: articlegen fan-out --runs 4 --max-new-tokens 200
    """
    params = _checked_params(app, **options)
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "fan-out starts runs on a work pool, which needs a Prefect server: set "
            "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) and start workers, as the README's "
            '"Running on several machines" shows'
        )
    check_prefect_api()
    quiet_prefect("WARNING")
    from articlegen.flows.fan_out import fan_out as fan_out_flow

    result = fan_out_flow(params=params, runs=runs, sharded=sharded, deployment=deployment)
    click.echo(f"Fan-out: {runs} runs of {deployment} completed.")
    for run_id, state in result["runs"].items():
        click.echo(f"  {run_id}  {state}")
    click.echo("Next: articlegen jobs list")


def _interrupt_handler(progress: RunProgress) -> Callable[[int, FrameType | None], None]:
    """Ctrl-C: say at once what happens, on the progress bar. The run closes its job and gives
    its prompts back in a moment; Prefect then reports the run to its server, and when that was
    the temporary one (the same Ctrl-C stops it) its client retries for minutes. A second
    Ctrl-C ends the wait."""

    def handler(signum: int, frame: FrameType | None) -> None:
        progress.phase = (
            "stopping: written articles are kept, the rest go back to pending "
            "(Ctrl-C again to stop waiting for Prefect)"
        )
        raise KeyboardInterrupt

    return handler


def run_in_process(app: App, params: GenerateParams) -> None:
    """Run generate-articles in this process with a progress bar, and report the outcome."""
    quiet_prefect()
    # Imported here: Prefect takes seconds to import, and most commands never need it.
    from articlegen.flows.generate import run_generate

    job_id = open_job(app.settings, params)
    progress = progress_for(job_id)
    progress.phase = (
        "starting the run on Prefect's server"
        if os.environ.get("PREFECT_API_URL")
        else "starting the run (Prefect starts a temporary local server)"
    )
    done = threading.Event()
    follower = threading.Thread(target=follow, args=(progress, f"Job {job_id}", done), daemon=True)
    started = time.perf_counter()
    follower.start()
    # Signals reach the main thread only; a command run from another (a test's) keeps Python's.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt_handler(progress)) if main else None
    try:
        result = run_generate(params, job_id)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        done.set()
        follower.join()
        # The run, interrupted, closed its job as cancelled and gave its prompts back.
        click.echo(
            f"Interrupted: job {job_id} is cancelled; the articles it wrote are kept and its "
            "other prompts are pending again (`articlegen generate` takes them).",
            err=True,
        )
        raise SystemExit(130) from None  # the shell's code for a run stopped by Ctrl-C
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        done.set()
        follower.join()
    seconds = time.perf_counter() - started
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if result.dry_run:
        click.echo(
            f"Dry run: {result.prompts} pending prompts would become {result.total} "
            "articles. Nothing was claimed."
        )
        return
    if not result.total and result.status == "cancelled":
        click.echo(
            f"Job {job_id} cancelled before it generated anything: its prompts are still pending."
        )
        return
    if not result.total:
        if params.resume_job is not None:
            click.echo(
                f"Nothing to resume: job {params.resume_job} left nothing to write (other "
                "runs may have written its prompts)."
            )
            return
        _nothing_to_generate(app, params)  # another run took them after we looked
        return
    resumed = f" (resuming job {params.resume_job})" if params.resume_job else ""
    click.echo(
        f"Job {job_id} {result.status}{resumed}: {result.done} of {result.total} "
        f"articles written, {result.failed} failed, in {seconds:.1f} s.\n"
        f"Next: articlegen articles list --job {job_id}"
    )
    if result.failed and not result.done:
        raise SystemExit(1)  # nothing written: a script must see that the run failed
