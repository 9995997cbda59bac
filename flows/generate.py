"""The `generate-articles` flow: pending prompts become articles, two tasks per batch.

Orchestration only; every step is a function of `articlegen.runs`. Tasks take ids and
settings, never models or engines (Prefect would hash them), and cache nothing: the database is
the record. Steps that touch the database or load the model retry with backoff on transient
errors, never on a user's mistake.

Runs share one queue: each claims a batch at a time (`claim-batch`), so runs started together
split the work and end together. Each batch is a `generate-batch` task, run in the flow's
thread, then a `finish-batch` task (post-process, measure, render, record), submitted to the
flow's thread pool so that it runs while the next batch generates: the model never waits on
that CPU work. At most one batch is finishing at a time, and batches finish in order. The next
batch is claimed before a batch generates, and handed to it: its articles start in the rows
the batch's last articles leave free, so the run's rows idle only at its very end.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Literal, cast
from uuid import UUID

from prefect import State, flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.utilities.annotations import quote
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from articlegen import runs
from articlegen.core.bounds import MAX_BATCH_SIZE, MAX_RUN_LIMIT, MAX_VARIANTS
from articlegen.core.errors import ConfigError, PromptsFailed
from articlegen.core.interrupts import end_reason, interrupted
from articlegen.core.settings import Settings, load_settings
from articlegen.flows.finishing import abandon_on_failure, log_batch, settled
from articlegen.flows.steps import step
from articlegen.runs import (
    BatchReport,
    GeneratedBatch,
    GenerateParams,
    ProgressSnapshot,
    RunPlan,
    RunResult,
    artifacts,
)
from articlegen.runs.form import FORM_DEFAULTS, FormDecimal, FormInteger, PresetName
from articlegen.runs.form import FormPromptFormat as PromptFormatField

__all__ = ["generate_articles", "run_generate"]

# How often a running batch updates its progress artifact: often enough to watch, and one API
# call per this many seconds at most, whatever the decoding speed.
PROGRESS_EVERY = 2.0


@step("open-job")
def open_job(settings: Settings, params: GenerateParams) -> int:
    """Create the job row."""
    return runs.open_job(settings, params)


@step("check-run")
def check_run(settings: Settings, params: GenerateParams) -> None:
    """Check the preset and template names and load the model, before anything is claimed."""
    runs.check_params(settings, params)
    # A dry run with a batch size only plans: no model, unless the run frames prompts.
    if not (params.dry_run and params.batch_size) or runs.frames_prompts(settings, params):
        runs.check_model_fits(settings, params, runs.context_for(settings).model(params.model))


@step("choose-batch-size")
def choose_batch_size(settings: Settings, params: GenerateParams) -> GenerateParams:
    """Fix the batch size: the one asked for, else the hardware's (measured once, cached)."""
    return runs.choose_batch_size(settings, params)


@step("plan-run")
def plan_run(settings: Settings, params: GenerateParams) -> RunPlan:
    """A dry run's plan: the batches a run would write; claims nothing."""
    return runs.plan_run(settings, params)


@step("start-run")
def start_run(settings: Settings, job_id: int, params: GenerateParams) -> int:
    """Mark the job running; returns the articles it would write alone (other runs may take
    some: they share the queue)."""
    return runs.start_run(settings, job_id, params, str(flow_run.get_id() or ""))


@step("claim-batch", run_name="job-{job_id}-claim-{number}")
def claim_batch(
    settings: Settings, job_id: int, number: int, params: GenerateParams, claimed: int
) -> list[int]:
    """Claim the next batch from the shared queue; empty when nothing is left to take."""
    return runs.claim_batch(settings, job_id, params, claimed, number)


# The tag lets a Prefect concurrency limit cap how many batches generate at once (one GPU
# each): `prefect concurrency-limit create articlegen-generation 1`.
@step(
    "generate-batch",
    run_name="job-{job_id}-batch-{number}-generate",
    tags=["articlegen-generation"],
)
def generate_batch(
    settings: Settings,
    job_id: int,
    number: int,
    prompt_ids: list[int],
    params: GenerateParams,
    progress_artifact: UUID,
    ahead: list[int],
) -> GeneratedBatch:
    """Generate one batch (the model is loaded once per process), and start the next one's
    articles (`ahead`) in the rows its own leave; the progress artifact follows it article by
    article."""

    def show(progress: ProgressSnapshot) -> None:
        update_progress_artifact(progress_artifact, 100.0 * progress.fraction, progress.line())

    with runs.progress_for(job_id).listening(show, every=PROGRESS_EVERY):
        return runs.generate_batch(settings, job_id, number, prompt_ids, params, ahead)


@step("finish-batch", run_name="job-{job_id}-batch-{number}-finish")
def finish_batch(
    settings: Settings, job_id: int, number: int, batch: GeneratedBatch
) -> BatchReport:
    """Post-process, measure and render a generated batch, and record it in one transaction."""
    return runs.finish_batch(settings, batch)


@step("finish-job")
def finish_job(
    settings: Settings,
    job_id: int,
    params: GenerateParams,
    error: str | None = None,
    cancelled: bool = False,
    ahead: list[int] | None = None,
) -> RunResult:
    """Close the job with its final status and counts, giving back what it did not write
    (`ahead`, the batch claimed for the next generation, uncounted and off its total)."""
    return runs.finish_run(settings, job_id, params, error, cancelled, ahead or ())


def _name_run(job_id: int) -> None:
    # The run is created before its job exists (schedules, the UI); name it once it does.
    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(str(run_id)), name=f"generate-articles-job-{job_id}")


@flow(name="generate-articles", flow_run_name="generate-articles")
def generate_articles(
    limit: Annotated[int, Field(ge=0, le=MAX_RUN_LIMIT)] = 0,
    preset: PresetName = "nucleus",
    max_new_tokens: FormInteger = "",
    temperature: FormDecimal = "",
    top_p: FormDecimal = "",
    top_k: FormInteger = "",
    seed: FormInteger = "",
    noise_sigma: FormDecimal = "",
    more_decoding: str = "",
    prompt_format: PromptFormatField = "",
    system: str = "",
    no_system: bool = False,
    model: str = "",
    template: str = "",
    tags: tuple[str, ...] = (),
    variants: Annotated[int, Field(ge=0, le=MAX_VARIANTS)] = 0,
    batch_size: Annotated[int, Field(ge=0, le=MAX_BATCH_SIZE)] = 0,
    order: Literal["priority", "fifo"] = "priority",
    dry_run: bool = False,
    params: SkipJsonSchema[GenerateParams | None] = None,
    job_id: SkipJsonSchema[int | None] = None,
) -> RunResult | State[RunResult]:
    """Generate articles for pending prompts, in batches, and write them to the database.

    Args:
        limit: At most this many prompts; 0: every pending prompt.
        preset: Decoding preset for prompts that name none (a prompt's own preset wins).
        max_new_tokens: Tokens to generate per article; empty: each prompt's own setting.
        temperature: Sampling temperature over every prompt's own; empty: theirs.
        top_p: Nucleus sampling's probability mass; empty: each prompt's own.
        top_k: Sample among this many likeliest tokens; empty: each prompt's own.
        seed: Seed of every article (each variant derives its own); empty: each prompt's own.
        noise_sigma: Embedding noise weight; empty: each prompt's own.
        more_decoding: Any other decoding settings, as JSON, e.g. {"repetition_penalty": 1.2}.
        prompt_format: plain, chat or auto over every prompt's own; empty: each prompt's own.
        system: The system message (chat form) over every prompt's own; empty: theirs.
        no_system: No system message at all, whatever the prompts, their presets or the
            settings give.
        model: A registry name, Hub id or model directory; empty: the configured model.
        template: Article template for prompts that name none; empty: the default.
        tags: Only prompts with at least one of these tags; empty: all.
        variants: Articles per prompt instead of each prompt's own; 0: theirs.
        batch_size: Articles generated together; 0: measured for this model and machine.
        order: priority: highest priority first; fifo: oldest first.
        dry_run: Plan and report, but claim and write nothing.
    """
    form = {
        "limit": limit, "preset": preset, "max_new_tokens": max_new_tokens,
        "temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
        "noise_sigma": noise_sigma, "more_decoding": more_decoding,
        "prompt_format": prompt_format, "system": system, "no_system": no_system, "model": model,
        "template": template, "tags": tags, "variants": variants, "batch_size": batch_size,
        "order": order, "dry_run": dry_run,
    }  # fmt: skip
    # The CLI, fan-out and `jobs resume` hand over a whole GenerateParams; a person, the form.
    if params is None:
        params = runs.params_from_form(form)
    elif form != FORM_DEFAULTS:
        changed = sorted(k for k, v in form.items() if v != FORM_DEFAULTS[k])
        raise ConfigError(
            f"give either params or the form's fields, not both ({', '.join(changed)})"
        )
    return _run(params, job_id)


def _run(params: GenerateParams, job_id: int | None) -> RunResult | State[RunResult]:
    """The run: check, then claim, generate and finish one batch after another from the shared
    queue until it is empty; a run with failed prompts ends in a Failed state named
    CompletedWithErrors (its written articles are kept)."""
    started = time.perf_counter()
    settings = load_settings()
    # A run from the form or a schedule is refused before its job row exists (a typo leaves
    # no failed job behind). The CLI checked its runs before it opened their jobs; the flow
    # checks them again, in its own process and settings (a deployment's).
    checked = job_id is None
    if checked:
        check_run(settings, params)
    job_id = job_id or open_job(settings, params)
    reports: list[BatchReport] = []
    warnings: list[str] = []
    finishing: PrefectFuture[BatchReport] | None = None  # the batch that finishes meanwhile
    waited = 0.0  # seconds the run waited for batches to finish
    claimed = 0  # prompts claimed so far
    upcoming: list[int] = []  # the next batch, claimed before the current one generates
    stopped = False  # by `jobs cancel`
    try:
        _name_run(job_id)
        # The progress artifact says what the run does before its first token, too.
        progress = create_progress_artifact(
            0.0,
            key=f"job-{job_id}-progress",
            description="Starting…" if checked else "Loading the model…",
        )
        assert isinstance(progress, UUID)  # the sync API, called from a sync flow
        if not checked:
            check_run(settings, params)
        asked = params  # as given: the summary lists what the user set, not what was measured
        if params.batch_size is None:
            update_progress_artifact(
                progress, 0.0, "Choosing the batch size (measured once per model and machine)…"
            )
        params = choose_batch_size(settings, params)
        if params.dry_run:
            plan = plan_run(settings, params)
            update_progress_artifact(progress, 100.0, "Dry run: planned; nothing claimed.")
            create_markdown_artifact(
                runs.plan_markdown(job_id, plan),
                key=f"job-{job_id}-plan",
                description=artifacts.PLAN_DESCRIPTION,
            )
            finished = finish_job(settings, job_id, params)
            return replace(finished, total=plan.articles, prompts=plan.prompts, dry_run=True)
        estimate = start_run(settings, job_id, params)
        update_progress_artifact(progress, 0.0, f"0/{estimate} articles: generating…")

        def finished_one() -> None:
            log_batch(reports, warnings)
            done = runs.progress_for(job_id).snapshot()
            update_progress_artifact(progress, 100.0 * done.fraction, done.line())

        with runs.leases_kept(settings, job_id):
            number = 0
            upcoming = claim_batch(settings, job_id, 1, params, claimed)
            claimed += len(upcoming)
            # `upcoming` is empty once the queue is (or the run's limit is reached). A cancel
            # is read first: one that came during the last batch stops the run all the same.
            # An abandoned run (a batch failed to finish) raises that failure below.
            while (
                not (stopped := runs.cancel_requested(settings, job_id))
                and upcoming
                and not runs.abandoned(job_id)
            ):
                number += 1
                prompt_ids = upcoming
                # The next batch is claimed before this one generates: its articles start in
                # the rows this batch's last articles leave, so the run has one tail, not one
                # per batch (bench/README.md).
                upcoming = claim_batch(settings, job_id, number + 1, params, claimed)
                claimed += len(upcoming)
                batch = generate_batch(
                    settings, job_id, number, prompt_ids, params, progress, upcoming
                )
                if finishing is not None:  # the previous batch, which finished meanwhile
                    waited += settled(finishing, reports)
                    finishing = None
                    finished_one()
                # quote(): unquoted, Prefect would walk every token of the batch looking for
                # futures, in this thread, while the model waits. The task gets the batch itself.
                quoted = cast(GeneratedBatch, quote(batch))
                finishing = finish_batch.submit(settings, job_id, number, quoted)
                finishing.add_done_callback(abandon_on_failure(job_id))
            if finishing is not None:
                waited += settled(finishing, reports)
                finishing = None
                finished_one()
    except BaseException as exc:
        if finishing is not None:
            # It may still be recording its batch: wait for it, so that what goes back is
            # exactly what was not recorded. A second Ctrl-C cuts the wait short and the claims
            # are released anyway: the database still keeps each batch whole (a write-back
            # settles only prompts the job holds; giving back releases only prompts not
            # settled), and only this run's report misses that batch.
            try:
                reports.append(finishing.result())
            except BaseException:  # its own failure, or the second Ctrl-C: not recorded here
                pass
            else:
                log_batch(reports, warnings)
        # Batches are written whole or not at all: whatever the job still holds goes back.
        # BaseException: Ctrl-C and Prefect's cancellation must release the claims too.
        cancelled = interrupted(exc) or not isinstance(exc, Exception)
        error = end_reason(exc)
        finish_job.fn(settings, job_id, params, error=error, cancelled=cancelled, ahead=upcoming)
        raise
    # Stopped by `jobs cancel`: what the last batch did not finish goes back to pending.
    finished = finish_job(
        settings,
        job_id,
        params,
        error="stopped by `articlegen jobs cancel`" if stopped else None,
        cancelled=stopped,
        # Not empty only after a cancel (an abandoned run raised above): the batch claimed
        # for a generation that will not come.
        ahead=upcoming,
    )
    if stopped:  # the bar would otherwise stay as the last batch left it, as if still going
        update_progress_artifact(
            progress,
            100.0 * finished.done / finished.total if finished.total else 0.0,
            f"Cancelled: {finished.done} of {finished.total} articles written.",
        )
    result = replace(
        finished,
        prompts=claimed - len(upcoming),
        seconds=runs.stage_seconds(reports, time.perf_counter() - started, waited),
        warnings=tuple(warnings),
    )
    create_markdown_artifact(
        runs.summary_markdown(result, reports, asked, settings.web_url),
        key=f"job-{job_id}-summary",
        description=artifacts.SUMMARY_DESCRIPTION,
    )
    rows = [row for report in reports for row in report.written]
    if rows:
        create_table_artifact(
            rows, key=f"job-{job_id}-articles", description=artifacts.ARTICLES_DESCRIPTION
        )
    if result.failed:
        # Red in the UI and a failure to automations, unlike a clean run: someone should look
        # at the failed prompts. The articles written are kept; the summary lists the failures.
        message = (
            f"{result.failed} of {result.total} articles failed, {result.done} written: see "
            f"the job-{job_id}-summary artifact"
        )
        return Failed(
            name="CompletedWithErrors", message=message, data=PromptsFailed(message, result)
        )
    return result


def run_generate(params: GenerateParams, job_id: int | None = None) -> RunResult:
    """Run generate-articles here and return how it went, whether its state is Completed or
    CompletedWithErrors; an exception that failed the run is raised again."""
    state = generate_articles(params=params, job_id=job_id, return_state=True)
    outcome: object = state.result(raise_on_failure=False)
    if isinstance(outcome, PromptsFailed):
        outcome = outcome.result
    if isinstance(outcome, BaseException):
        raise outcome
    if not isinstance(outcome, RunResult):
        raise TypeError(f"generate-articles ended in {state!r} without a result")
    return outcome
