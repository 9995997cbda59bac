"""The steps of a generation run, each one call the `generate-articles` flow makes as a task.

open a job → claim pending prompts and plan batches → write each batch (generate, post-process,
render, record in one transaction) → finish the job. Nothing here imports Prefect, so every step
runs and is tested on its own.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from articlegen.errors import ConfigError
from articlegen.settings import Settings
from db.articles import PromptFailure, next_versions, record_batch
from db.claims import Shard, claim, reconcile, release, renew
from db.jobs import check_resumable, create_job, finish_job, get_job, start_job
from db.models import Prompt
from db.session import Database
from generator.decoding import DEFAULT_PRESET, DecodingWarning, load_presets, validate_overrides

if TYPE_CHECKING:
    from generator.loading import ModelSpec

_log = logging.getLogger(__name__)

__all__ = [
    "BatchReport",
    "GenerateParams",
    "RunPlan",
    "cancel_requested",
    "choose_batch_size",
    "claim_batches",
    "close_databases",
    "finish_run",
    "leases_kept",
    "model_spec",
    "open_job",
    "plan_markdown",
    "stage_seconds",
    "summary_markdown",
    "write_batch",
]


class GenerateParams(BaseModel):
    """What a `generate-articles` run does; the Prefect UI shows these as its form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="At most this many prompts; empty: all."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="Articles generated together; empty: chosen from the hardware (measured "
        "once per model and machine, then cached). Larger batches use the hardware better "
        "until memory runs out (then batches split by themselves on a GPU).",
    )
    model: str | None = Field(
        default=None, description="Hub id or local directory; empty: ARTICLEGEN_MODEL."
    )
    preset: str | None = Field(
        default=None,
        description="Decoding preset for prompts that name none; empty: nucleus.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='Decoding settings applied over every prompt\'s own, e.g. {"max_new_tokens": '
        "120}.",
    )
    template: str | None = Field(
        default=None, description="Article template stem for prompts that name none."
    )
    tags: list[str] = Field(
        default_factory=list, description="Only prompts with at least one of these tags."
    )
    variants: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Articles per prompt, instead of each prompt's own `variants`.",
    )
    order: Literal["priority", "fifo"] = Field(
        default="priority", description="priority: highest priority first; fifo: oldest first."
    )
    dry_run: bool = Field(
        default=False, description="Plan and report, but claim and write nothing."
    )
    shard: int = Field(
        default=0,
        ge=0,
        description="With `shards`: take only the prompts whose id is this "
        "modulo `shards` (the fan-out flow gives each of its runs one shard).",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="How many shards the pending prompts are split into; 1: no split.",
    )
    resume_job: int | None = Field(
        default=None,
        ge=1,
        description="Finish this crashed, failed or cancelled job: take only the pending "
        "prompts it had claimed (`articlegen jobs resume`).",
    )

    @model_validator(mode="after")
    def _shard_in_range(self) -> GenerateParams:
        if self.shard >= self.shards:
            raise ValueError(
                f"shard {self.shard} of {self.shards}: shard must be below shards "
                f"(0 to {self.shards - 1})"
            )
        return self

    @field_validator("overrides")
    @classmethod
    def _known_decoding_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Each setting alone here (name, type, range), typed as the decoder reads it ("0.8"
        # becomes 0.8); relations are checked against each prompt's own preset when run.
        try:
            return validate_overrides(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class RunPlan:
    """What a run claimed: its prompts in batches, and how many articles that makes."""

    batches: list[list[int]]
    prompts: int
    articles: int

    def unwritten(self, batches_done: int) -> list[int]:
        """The prompts of the batches after the first `batches_done`: what a run that stops
        there gives back."""
        return [p for batch in self.batches[batches_done:] for p in batch]


@dataclass
class BatchReport:
    """What one batch wrote: rows for the run's table artifact, its failures, and where its
    time went (seconds per stage: loading, prompting, generation, post-processing, rendering,
    write-back)."""

    written: list[dict[str, Any]] = field(default_factory=list)
    failures: list[PromptFailure] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # prompts another run took over: not written
    batch_metrics: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def database(url: str) -> Database:
    """One open database per URL per process, shared by the run's tasks."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database.open(url)
        return _databases[url]


def model_spec(settings: Settings, model: str | None = None) -> ModelSpec:
    """The model a run uses: `model`, else ARTICLEGEN_MODEL, with the device settings.

    One place, so a CLI check and the run ask the per-process model cache for the same key.
    """
    # Imported here: generator.loading imports torch, which most steps never need.
    from generator.loading import ModelSpec

    return ModelSpec(
        model or settings.model, settings.model_revision, settings.device, settings.dtype
    )


def close_databases() -> None:
    """Close the databases this process opened (end of a worker, or of a test)."""
    with _databases_lock:
        for db in _databases.values():
            db.close()
        _databases.clear()


def open_job(settings: Settings, params: GenerateParams) -> int:
    """Create the run's job row (queued) and return its id."""
    with database(settings.database_url).session() as session:
        job = create_job(session, params.model_dump(mode="json"), params.model or settings.model)
        return job.id


def _variants(prompt: Prompt, params: GenerateParams) -> list[int]:
    """The variants a run writes for `prompt`: those queued by a review, else all of them."""
    if prompt.regenerate:
        return sorted(set(prompt.regenerate))
    return list(range(1, (params.variants or prompt.variants) + 1))


def choose_batch_size(settings: Settings, params: GenerateParams) -> GenerateParams:
    """`params` with a concrete batch size: the one given, else the hardware's (measured once
    per model and machine by `generator.batching`, then read from ARTICLEGEN_CACHE_DIR)."""
    if params.batch_size is not None:
        return params
    from generator.batching import auto_batch_size
    from generator.loading import load_model

    loaded = load_model(model_spec(settings, params.model))
    size = auto_batch_size(loaded, settings.cache_dir, settings.kv_cache_mb)
    return params.model_copy(update={"batch_size": size})


def _batch_size(params: GenerateParams) -> int:
    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    return params.batch_size


def claim_batches(
    settings: Settings, job_id: int, params: GenerateParams, flow_run_id: str | None = None
) -> RunPlan:
    """Claim pending prompts for the job, under a lease, and cut them into batches of about
    `batch_size` articles; a prompt's variants stay in one batch. Jobs whose process died are
    marked crashed first, so their prompts can be claimed. A dry run claims nothing."""
    batch_size = _batch_size(params)
    lease = timedelta(seconds=settings.lease_seconds)
    with database(settings.database_url).session() as session:
        reconcile(session)
        if params.resume_job is not None:
            check_resumable(session, params.resume_job)
        prompts = claim(
            session,
            job_id,
            lease,
            limit=params.limit,
            tags=params.tags,
            order=params.order,
            shard=Shard(params.shard, params.shards),
            resume_of=params.resume_job,
        )
        # A run takes prompts in priority (or fifo) order; within it, prompts of equal priority
        # are batched by length. The engine sorts each batch by length, but a batch that mixes
        # one long prompt with short ones is cut by the cache budget into small, slow pieces:
        # with claim-order batches the flow ran at 82% of the engine alone (bench/README.md).
        by_priority = params.order == "priority"
        ordered = sorted(
            prompts, key=lambda p: (-p.priority if by_priority else 0, len(p.prompt or p.topic))
        )
        batches: list[list[int]] = []
        size = 0
        for prompt in ordered:
            count = len(_variants(prompt, params))
            if not batches or size + count > batch_size:
                batches.append([])
                size = 0
            batches[-1].append(prompt.id)
            size += count
        plan = RunPlan(
            batches=batches,
            prompts=len(prompts),
            articles=sum(len(_variants(p, params)) for p in prompts),
        )
        if params.dry_run:
            session.rollback()  # a dry run only looks
            return plan
        start_job(session, job_id, plan.articles, None, flow_run_id, lease)
        return plan


@contextmanager
def leases_kept(settings: Settings, job_id: int) -> Iterator[None]:
    """Renew the job's lease and its prompts' while the block runs, every third of
    ARTICLEGEN_LEASE_SECONDS, from a background thread: a batch may take longer than a lease.

    A renewal that fails (the database is briefly unreachable) is logged and tried again at
    the next beat; if the lease runs out meanwhile, another run may take the prompts, and this
    run's write-back then skips them (`db.claims.held_by`).
    """
    stop = threading.Event()
    lease = timedelta(seconds=settings.lease_seconds)

    def beat() -> None:
        while not stop.wait(settings.lease_seconds / 3):
            try:
                with database(settings.database_url).session() as session:
                    renew(session, job_id, lease)
            except Exception as exc:  # a beat must never kill the run
                _log.warning("job %s: could not renew its lease: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"articlegen-lease-job-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def cancel_requested(settings: Settings, job_id: int) -> bool:
    """Whether `articlegen jobs cancel` asked the job to stop."""
    with database(settings.database_url).session(write=False) as session:
        return get_job(session, job_id).cancel_requested


def write_batch(
    settings: Settings, job_id: int, prompt_ids: list[int], params: GenerateParams
) -> BatchReport:
    """Generate, post-process and render one batch, then record it in one transaction."""
    # Imported here: torch and transformers take seconds to import; the other steps need
    # neither.
    from generator.articles import ArticleInput, ArticleWriter, WrittenArticle
    from generator.batching import cache_tokens
    from generator.engine import Engine, derive_seed, fresh_seed
    from generator.loading import load_model
    from generator.templates import Templates

    started = time.perf_counter()
    db = database(settings.database_url)
    catalog = load_presets(settings.presets_file)
    loaded = load_model(model_spec(settings, params.model))
    with db.session(write=False) as session:
        query = select(Prompt).where(Prompt.id.in_(prompt_ids))
        prompts = {p.id: p for p in session.scalars(query)}
        versions = next_versions(session, prompt_ids)
    report = BatchReport()
    inputs = []
    planned: dict[int, int] = {}
    for prompt_id in prompt_ids:
        prompt = prompts[prompt_id]
        variants = _variants(prompt, params)
        planned[prompt_id] = len(variants)
        preset = prompt.preset or params.preset or DEFAULT_PRESET
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DecodingWarning)
                config = catalog.resolve(preset, {**prompt.decoding, **params.overrides})
        except ConfigError as exc:
            report.failures.append(PromptFailure(prompt_id, str(exc), planned[prompt_id]))
            continue
        for variant in variants:
            version = versions.get((prompt_id, variant), 1)
            seed = (
                derive_seed(config.seed, prompt_id, variant, version)
                if config.seed is not None
                else fresh_seed()
            )
            inputs.append(
                ArticleInput(
                    key=(prompt_id, variant, version),
                    topic=prompt.topic,
                    decoding=config,
                    seed=seed,
                    preset=preset,
                    prompt=prompt.prompt,
                    extra=prompt.extra,
                    template=prompt.template or params.template,
                )
            )
    engine = Engine(
        loaded,
        batch_size=_batch_size(params),
        cache_tokens=cache_tokens(loaded, settings.kv_cache_mb),
    )
    writer = ArticleWriter(engine, Templates(settings.templates_dir))
    loading = time.perf_counter() - started
    result = writer.write(inputs)
    report.batch_metrics = result.batch_metrics
    outcomes = result.outcomes
    started = time.perf_counter()
    by_key = {item.key: item for item in inputs}
    rows = []
    reasons: dict[int, str] = {}
    for outcome in outcomes:
        prompt_id, variant, version = outcome.key  # type: ignore[misc]
        if not isinstance(outcome, WrittenArticle):
            reasons.setdefault(prompt_id, outcome.reason)
            continue
        g = outcome.generation
        rows.append(
            {
                "prompt_id": prompt_id,
                "variant": variant,
                "version": version,
                # Byte-level tokenizers can produce a NUL byte, which PostgreSQL text refuses.
                "raw_text": g.text.replace("\x00", "\ufffd"),
                "title": outcome.text.title,
                "body": outcome.text.body,
                "rendered": outcome.rendered,
                "seed": by_key[outcome.key].seed,
                "decoding": by_key[outcome.key].decoding.model_dump(mode="json"),
                "model_name": loaded.name,
                "model_revision": loaded.revision,
                "template_name": outcome.template_name,
                "template_version": outcome.template_version,
                "prompt_tokens": g.prompt_tokens,
                "tokens_generated": g.tokens_generated,
                "generation_seconds": g.seconds,
                "timings": {"generation_seconds": g.seconds, "batch_size": g.batch_size},
                "finish_reason": g.finish_reason,
                "metrics": outcome.metrics.as_dict(),
            }
        )
    for prompt_id, reason in reasons.items():
        written = sum(1 for r in rows if r["prompt_id"] == prompt_id)
        report.failures.append(PromptFailure(prompt_id, reason, planned[prompt_id] - written))
    with db.session() as session:
        recorded = record_batch(session, job_id, rows, report.failures)
        report.lost = recorded.lost
        report.written = [
            {
                "article": a.id,
                "prompt": a.prompt_id,
                "variant": a.variant,
                "title": a.title,
                "words": a.metrics.get("word_count"),
                "perplexity": a.metrics.get("perplexity"),
                "flags": ", ".join(a.metrics.get("flags", [])),
                "review": f"articlegen articles show {a.id}",
            }
            for a in recorded.articles
        ]
    report.seconds = {
        "loading": loading,
        **result.seconds,
        "write-back": time.perf_counter() - started,
    }
    return report


def finish_run(
    settings: Settings,
    job_id: int,
    error: str | None = None,
    unwritten: Sequence[int] = (),
    cancelled: bool = False,
) -> dict[str, Any]:
    """Close the job and return its final counts; a failed or cancelled run gives back the
    prompts it claimed and could not write, so the next run takes them."""
    with database(settings.database_url).session() as session:
        release(session, job_id, unwritten)
        job = finish_job(session, job_id, error, cancelled)
        return {
            "job": job.id,
            "status": job.status.value,
            "total": job.total,
            "done": job.done,
            "failed": job.failed,
        }


def stage_seconds(reports: Sequence[BatchReport], wall: float) -> dict[str, float]:
    """Where a run's time went: each batch stage summed over its batches, and `orchestration`,
    everything else (claiming, Prefect's task runs, artifacts, opening and closing the job)."""
    total: defaultdict[str, float] = defaultdict(float)
    for report in reports:
        for stage, seconds in report.seconds.items():
            total[stage] += seconds
    return {**total, "orchestration": max(0.0, wall - sum(total.values()))}


def plan_markdown(job_id: int, plan: RunPlan) -> str:
    """The dry-run report shown as a Prefect artifact."""
    return (
        f"# Job {job_id}: dry run\n\n{plan.prompts} pending prompts would become "
        f"{plan.articles} articles in {len(plan.batches)} batches. Nothing was claimed."
    )


def summary_markdown(result: dict[str, Any], reports: list[BatchReport]) -> str:
    """The end-of-run summary shown as a Prefect artifact."""
    lines = [
        f"# Job {result['job']}: {result['status']}",
        "",
        f"{result['done']} of {result['total']} articles written, {result['failed']} failed.",
    ]
    seconds: dict[str, float] = result.get("seconds", {})
    if seconds:
        wall = sum(seconds.values()) or 1.0
        lines += ["", "| stage | seconds | share |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {v:.2f} | {v / wall:.0%} |" for k, v in seconds.items()]
    failures = [f for report in reports for f in report.failures]
    if failures:
        lines += ["", "## Failed prompts", ""]
        lines += [f"- prompt {f.prompt_id}: {f.reason}" for f in failures]
    lost = [p for report in reports for p in report.lost]
    if lost:
        lines += [
            "",
            "## Taken over by another run",
            "",
            f"This run's lease on prompts {', '.join(map(str, lost))} ran out before it could "
            "write them, and another run claimed them; it wrote nothing for them.",
        ]
    lines += ["", "Review with `articlegen articles list --job " + str(result["job"]) + "`."]
    return "\n".join(lines)
