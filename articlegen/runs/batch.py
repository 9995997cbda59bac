"""Writing one batch: generate, post-process and render its articles, then record them and
settle its prompts in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
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
from articlegen.runs.params import GenerateParams
from articlegen.runs.plan import variants_of
from articlegen.runs.progress import progress_for
from articlegen.runs.reports import BatchReport

if TYPE_CHECKING:
    # At run time these load in the functions that need them: torch takes seconds to import.
    from articlegen.generator.articles import ArticleFailure, ArticleInput, WrittenArticle
    from articlegen.generator.loading import LoadedModel

__all__ = ["write_batch"]


def write_batch(
    settings: Settings, job_id: int, prompt_ids: list[int], params: GenerateParams
) -> BatchReport:
    """Generate, post-process and render one batch, then record it in one transaction."""
    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    started = time.perf_counter()
    context = context_for(settings)
    loaded = context.model(params.model)
    writer = context.writer(loaded, params.batch_size)
    with context.database.session(write=False) as session:
        prompts = {
            p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))
        }
        versions = next_versions(session, prompt_ids)
    report = BatchReport()
    planned = {p: len(variants_of(prompts[p], params)) for p in prompt_ids}
    inputs = _inputs(context, [prompts[p] for p in prompt_ids], versions, params, report)
    loading = time.perf_counter() - started
    progress = progress_for(job_id)
    progress.batch_started()
    result = writer.write(inputs, progress.step)
    report.batch_metrics = result.batch_metrics
    started = time.perf_counter()
    rows, reasons = _rows(inputs, result.outcomes, loaded)
    for prompt_id, reason in reasons.items():
        written = sum(1 for r in rows if r.prompt_id == prompt_id)
        report.failures.append(PromptFailure(prompt_id, reason, planned[prompt_id] - written))
    with context.database.session() as session:
        record_model(session, job_id, loaded.name, loaded.revision)
        kind = ModelKind.LOCAL if loaded.local else ModelKind.HUB
        kind = ModelKind.RANDOM if loaded.random_weights else kind  # `models init`'s: noise
        model = ensure_model(session, loaded.name, loaded.source, loaded.revision, kind)
        rows = [replace(row, model_id=model.id, model_kind=model.kind) for row in rows]
        recorded = record_batch(session, job_id, rows, report.failures)
        report.lost = recorded.lost
        report.written = [article_row(a, settings.web_url) for a in recorded.articles]
    report.tokens = sum(row.tokens_generated for row in rows)
    progress.batch_done(sum(planned.values()))
    report.seconds = {
        "loading": loading,
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
            # The prompt's own format and system message, over its preset's, over the settings'.
            own = parse_style({"prompt_format": prompt.prompt_format, "system": prompt.system})
            style = context.presets.style(preset, own, settings_style)
        except ConfigError as exc:
            variants = len(variants_of(prompt, params))
            report.failures.append(PromptFailure(prompt.id, str(exc), variants))
            continue
        report.warnings += [w for w in resolved.warnings if w not in report.warnings]
        config = resolved.config
        for variant in variants_of(prompt, params):
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
) -> tuple[list[ArticleRow], dict[int, str]]:
    """The rows to store for the written articles, and the first failure of each prompt."""
    from articlegen.generator.articles import WrittenArticle

    by_key = {item.key: item for item in inputs}
    rows: list[ArticleRow] = []
    reasons: dict[int, str] = {}
    for outcome in outcomes:
        if isinstance(outcome, WrittenArticle):
            rows.append(_row(outcome, by_key[outcome.key], loaded))
        else:
            reasons.setdefault(_article_key(outcome.key)[0], outcome.reason)
    return rows, reasons


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
