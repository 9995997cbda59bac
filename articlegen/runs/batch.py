"""Writing one batch, in two steps that may overlap across batches: `generate_batch` (load the
prompts, run the model) and `finish_batch` (post-process, measure, render, then record the
articles and settle the prompts in one transaction). `write_batch` runs both, one after the other.

The flow finishes batch k in a worker thread while the model generates batch k+1, so the GPU
does not wait on the CPU. A batch is still recorded whole or not at all, by `finish_batch` alone:
a generated batch that is never finished leaves its prompts claimed, and the run gives them back.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from sqlalchemy import select

from articlegen.core.errors import ConfigError
from articlegen.core.settings import Settings
from articlegen.db.articles import ArticleRow, PromptFailure, next_versions, record_batch
from articlegen.db.jobs import record_model
from articlegen.db.models import ModelKind, Prompt
from articlegen.db.registry import ensure_model
from articlegen.generator.chat import PromptStyle, parse_style
from articlegen.generator.decoding import DEFAULT_PRESET, parse_overrides
from articlegen.runs.artifacts import article_row
from articlegen.runs.context import RunContext, context_for
from articlegen.runs.lifecycle import CancelWatch
from articlegen.runs.observe import starting
from articlegen.runs.params import GenerateParams
from articlegen.runs.progress import progress_for
from articlegen.runs.reports import BatchReport
from articlegen.runs.upcoming import BatchInputs, keep_upcoming, take_upcoming

if TYPE_CHECKING:
    # At run time these load in the functions that need them: torch takes seconds to import.
    from articlegen.generator.articles import (
        ArticleFailure,
        ArticleInput,
        Generated,
        WrittenArticle,
    )
    from articlegen.generator.loading import LoadedModel, ModelSpec

__all__ = [
    "GeneratedBatch",
    "finish_batch",
    "generate_batch",
    "write_batch",
]


@dataclass(frozen=True)
class GeneratedBatch:
    """A batch the model has generated and that is not recorded yet: what `generate_batch`
    hands `finish_batch`, in memory. Plain data, no model; finishing it twice (a retry) records
    it once."""

    job_id: int
    number: int  # the batch's place in its run, from 1
    model: ModelSpec  # the model that generated it: its name and revision go on every row
    batch_size: int
    generated: Generated
    planned: dict[int, int]  # articles planned per prompt, in the batch's prompt order
    failures: tuple[PromptFailure, ...]  # prompts whose settings were invalid: not generated
    warnings: tuple[str, ...]  # decoding warnings of its prompts
    loading: float  # seconds spent reading its prompts and building its inputs


def write_batch(
    settings: Settings, job_id: int, prompt_ids: list[int], params: GenerateParams
) -> BatchReport:
    """Generate, post-process and render one batch, then record it in one transaction."""
    return finish_batch(settings, generate_batch(settings, job_id, 1, prompt_ids, params))


def generate_batch(
    settings: Settings,
    job_id: int,
    number: int,
    prompt_ids: list[int],
    params: GenerateParams,
    ahead: list[int] | None = None,
) -> GeneratedBatch:
    """Read batch `number`'s prompts and generate its articles; records nothing. `ahead` is
    the run's next batch, claimed already: its articles start in the rows this batch's last
    articles leave free, and go on in its own `generate_batch`."""
    from articlegen.generator.loading import load_model
    from articlegen.generator.requests import GenerationFailure

    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    starting(job_id, number, "generate")
    context = context_for(settings)
    spec = context.model_spec(params.model)
    loaded = load_model(spec)
    writer = context.writer(loaded, params.batch_size)
    kept = take_upcoming(job_id, prompt_ids)  # built by the last batch's generation
    batch = kept or _prepare(context, prompt_ids, params)
    upcoming = _prepare(context, ahead, params) if ahead else None
    if upcoming is not None:
        keep_upcoming(job_id, upcoming)
    # Each batch's reading and building counts once, in the batch that did it.
    loading = (0.0 if kept else batch.seconds) + (upcoming.seconds if upcoming else 0.0)
    progress = progress_for(job_id)
    progress.batch_started()
    # `jobs cancel` stops the batch within a decoding step: what ended is finished and
    # recorded, the rest goes back to pending with the run.
    generated = writer.generate(
        batch.inputs,
        progress.step,
        CancelWatch(settings, job_id),
        ahead=upcoming.inputs if upcoming is not None else (),
    )
    # Counted as finished once generated: the next batch's rows are counted from now on, and a
    # failed write-back fails the whole run anyway. A prompt a cancel cut short is not written.
    cut = {
        _article_key(g.key)[0]
        for g in generated.generations
        if isinstance(g, GenerationFailure) and g.stopped
    }
    progress.batch_done(sum(n for p, n in batch.planned.items() if p not in cut))
    return GeneratedBatch(
        job_id=job_id,
        number=number,
        model=spec,
        batch_size=params.batch_size,
        generated=generated,
        planned=batch.planned,
        failures=batch.failures,
        warnings=batch.warnings,
        loading=loading,
    )


def _prepare(context: RunContext, prompt_ids: list[int], params: GenerateParams) -> BatchInputs:
    """Read a batch's prompts and build one input per article."""
    started = time.perf_counter()
    with context.database.session(write=False) as session:
        prompts = {
            p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))
        }
        # Versions read before the previous batch is recorded are still right: a prompt, with
        # all its variants, belongs to one batch of one run.
        versions = next_versions(session, prompt_ids)
    report = BatchReport()
    planned = {p: len(params.variants_of(prompts[p])) for p in prompt_ids}
    inputs = _inputs(context, [prompts[p] for p in prompt_ids], versions, params, report)
    return BatchInputs(
        prompt_ids=tuple(prompt_ids),
        inputs=tuple(inputs),
        planned=planned,
        failures=tuple(report.failures),
        warnings=tuple(report.warnings),
        seconds=time.perf_counter() - started,
    )


def finish_batch(settings: Settings, batch: GeneratedBatch) -> BatchReport:
    """Post-process, measure and render a generated batch, then record its articles and settle
    its prompts in one transaction: all of the batch, or nothing of it.

    Runs in a worker thread beside the next batch's generation, safely: it opens its own
    sessions (`Database.session` makes one per call, and the engine's pool gives each its own
    connection), it reaches the run context only through its lock, and `ArticleWriter.finish`
    shares nothing mutable with `ArticleWriter.generate`.
    """
    from articlegen.generator.loading import load_model

    starting(batch.job_id, batch.number, "finish")
    context = context_for(settings)
    loaded = load_model(batch.model)  # the loaded model of `generate_batch`, from its cache
    result = context.writer(loaded, batch.batch_size).finish(batch.generated)
    started = time.perf_counter()
    report = BatchReport(
        failures=list(batch.failures),
        warnings=list(batch.warnings),
        batch_metrics=result.batch_metrics,
    )
    rows, reasons, stopped = _rows(batch.generated.inputs, result.outcomes, loaded)
    report.returned = sorted(stopped)
    for prompt_id, reason in reasons.items():
        written = sum(1 for r in rows if r.prompt_id == prompt_id)
        report.failures.append(PromptFailure(prompt_id, reason, batch.planned[prompt_id] - written))
    with context.database.session() as session:
        record_model(session, batch.job_id, loaded.name, loaded.revision)
        kind = ModelKind.LOCAL if loaded.local else ModelKind.HUB
        kind = ModelKind.RANDOM if loaded.random_weights else kind  # `models init`'s: noise
        model = ensure_model(session, loaded.name, loaded.source, loaded.revision, kind)
        rows = [replace(row, model_id=model.id, model_kind=model.kind) for row in rows]
        recorded = record_batch(session, batch.job_id, rows, report.failures)
        starting(batch.job_id, batch.number, "record")
        report.lost = recorded.lost
        report.written = [article_row(a, settings.web_url) for a in recorded.articles]
    report.tokens = sum(row.tokens_generated for row in rows)
    report.seconds = {
        "loading": batch.loading,
        **result.seconds,
        "write-back": time.perf_counter() - started,
    }
    return report


def _inputs(
    context: RunContext,
    prompts: Sequence[Prompt],
    versions: Mapping[tuple[int, int], int],
    params: GenerateParams,
    report: BatchReport,
) -> list[ArticleInput]:
    """One input per article of the batch: its decoding configuration (checked once per run
    context), its prompt format and system message, its seed and its template. A prompt whose
    settings are invalid fails whole."""
    from articlegen.generator.articles import ArticleInput
    from articlegen.generator.seeding import derive_seed, fresh_seed

    settings_style = PromptStyle.from_settings(context.settings)
    inputs = []
    for prompt in prompts:
        preset = prompt.preset or params.preset or DEFAULT_PRESET
        try:
            resolved = context.decoding(preset, parse_overrides(prompt.decoding), params.overrides)
            # The run's format and system message, over the prompt's own, over its preset's,
            # over the settings'.
            own = parse_style({"prompt_format": prompt.prompt_format, "system": prompt.system})
            style = context.presets.style(preset, own, settings_style, run=params.style)
        except ConfigError as exc:
            variants = len(params.variants_of(prompt))
            report.failures.append(PromptFailure(prompt.id, str(exc), variants))
            continue
        report.warnings += [w for w in resolved.warnings if w not in report.warnings]
        config = resolved.config
        for variant in params.variants_of(prompt):
            version = versions.get((prompt.id, variant), 1)
            seed = (
                derive_seed(config.seed, prompt.id, variant, version)
                if config.seed is not None
                else fresh_seed()
            )
            inputs.append(
                ArticleInput(
                    key=(prompt.id, variant, version),
                    topic=prompt.topic,
                    decoding=config,
                    seed=seed,
                    preset=preset,
                    prompt=prompt.prompt,
                    extra=prompt.extra,
                    template=prompt.template or params.template,
                    style=style,
                )
            )
    return inputs


def _article_key(key: Hashable) -> tuple[int, int, int]:
    # The keys `_inputs` gave: (prompt, variant, version).
    return cast(tuple[int, int, int], key)


def _rows(
    inputs: Sequence[ArticleInput],
    outcomes: Sequence[WrittenArticle | ArticleFailure],
    loaded: LoadedModel,
) -> tuple[list[ArticleRow], dict[int, str], set[int]]:
    """The rows to store for the written articles, the first failure of each prompt, and the
    prompts a stop cut short: those are neither written nor failed (their articles that did
    end are dropped, so the prompt's next run writes each variant once) and go back."""
    from articlegen.generator.articles import WrittenArticle

    by_key = {item.key: item for item in inputs}
    rows: list[ArticleRow] = []
    reasons: dict[int, str] = {}
    stopped: set[int] = set()
    for outcome in outcomes:
        prompt_id = _article_key(outcome.key)[0]
        if isinstance(outcome, WrittenArticle):
            rows.append(_row(outcome, by_key[outcome.key], loaded))
        elif outcome.stopped:
            stopped.add(prompt_id)
        else:
            reasons.setdefault(prompt_id, outcome.reason)
    rows = [row for row in rows if row.prompt_id not in stopped]
    reasons = {p: reason for p, reason in reasons.items() if p not in stopped}
    return rows, reasons, stopped


def _row(article: WrittenArticle, item: ArticleInput, loaded: LoadedModel) -> ArticleRow:
    prompt_id, variant, version = _article_key(article.key)
    g = article.generation
    return ArticleRow(
        prompt_id=prompt_id,
        variant=variant,
        version=version,
        raw_text=g.text,
        title=article.text.title,
        body=article.text.body,
        rendered=article.rendered,
        seed=item.seed,
        decoding=item.decoding.model_dump(mode="json"),
        model_name=loaded.name,
        model_revision=loaded.revision,
        template_name=article.template_name,
        template_version=article.template_version,
        prompt_tokens=g.prompt_tokens,
        tokens_generated=g.tokens_generated,
        generation_seconds=g.seconds,
        timings={"generation_seconds": g.seconds, "batch_size": g.batch_size},
        finish_reason=g.finish_reason,
        metrics=article.metrics.as_dict(),
        preset=item.preset,
        prompt_text=article.prompt_text,
        prompt_format=article.prompt_format,
    )
