"""Planning a run: which prompts it takes, batch by batch.

Runs share one queue: a run claims one batch at a time, under a lease (`db.claims`), so runs
started together, on one machine or many, split the work between them and finish together, and
a run that dies holds a few batches, not the night's work: the one finishing, the one
generating and the next, claimed before it so that its articles can start in the generating
batch's tail (`runs.upcoming`). A batch is the highest-priority prompts left (or the oldest),
about `batch_size x ARTICLEGEN_QUEUE_DEPTH` articles of them, ordered within one priority by
length; a prompt's variants stay in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from articlegen.core.settings import Settings
from articlegen.db.claims import Shard, claim, claimable_prompts, count_claimable, reconcile
from articlegen.db.jobs import add_claimed, check_resumable, get_job, start_job
from articlegen.db.models import JobStatus, Prompt
from articlegen.runs.context import context_for
from articlegen.runs.lifecycle import run_started
from articlegen.runs.observe import starting
from articlegen.runs.params import GenerateParams
from articlegen.runs.progress import progress_for

__all__ = [
    "RunPlan",
    "claim_batch",
    "claimable",
    "plan_batches",
    "plan_run",
    "start_run",
]


@dataclass(frozen=True)
class RunPlan:
    """Prompts in batches, and how many articles that makes: what a dry run reports."""

    batches: list[list[int]]
    prompts: int
    articles: int


def plan_batches(prompts: Sequence[Prompt], params: GenerateParams, batch_size: int) -> RunPlan:
    """Cut `prompts` into batches of about `batch_size` articles."""
    # A run takes prompts in priority (or fifo) order; within it, prompts of equal priority are
    # batched by length. The engine sorts each batch by length, but a batch that mixes one long
    # prompt with short ones is cut by the cache budget into small, slow pieces: with
    # claim-order batches the flow ran at 82% of the engine alone (bench/README.md).
    by_priority = params.order == "priority"
    ordered = sorted(
        prompts, key=lambda p: (-p.priority if by_priority else 0, len(p.prompt or p.topic))
    )
    batches: list[list[int]] = []
    size = 0
    for prompt in ordered:
        count = len(params.variants_of(prompt))
        if not batches or size + count > batch_size:
            batches.append([])
            size = 0
        batches[-1].append(prompt.id)
        size += count
    articles = sum(len(params.variants_of(p)) for p in prompts)
    return RunPlan(batches=batches, prompts=len(prompts), articles=articles)


def start_run(
    settings: Settings, job_id: int, params: GenerateParams, flow_run_id: str | None = None
) -> int:
    """Mark the job running (a resumed job must be resumable) and return how many articles
    the run would write if no other run took any: its progress's first total."""
    lease = timedelta(seconds=settings.lease_seconds)
    with context_for(settings).database.session() as session:
        reconcile(session, settings.max_attempts)  # a dead run's prompts are claimable now
        if params.resume_job is not None:
            check_resumable(session, params.resume_job)
        start_job(session, job_id, flow_run_id, lease)
        estimate = _estimate(session, params)
    progress_for(job_id).plan(estimate)
    run_started(job_id)  # from here on, a failed write-back stops the batch generating
    return estimate


def claim_batch(
    settings: Settings, job_id: int, params: GenerateParams, claimed: int = 0, number: int = 1
) -> list[int]:
    """Claim the run's next batch and return its prompts in batch order; empty when nothing
    claimable is left (or the run's `limit` is reached: it has `claimed` prompts already).
    Jobs whose process died are marked crashed first, so their prompts are claimed too."""
    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    left = None if params.limit is None else params.limit - claimed
    if left is not None and left <= 0:
        return []
    lease = timedelta(seconds=settings.lease_seconds)
    with context_for(settings).database.session() as session:
        reconcile(session, settings.max_attempts)
        job = get_job(session, job_id)
        if job.status is not JobStatus.RUNNING:
            # Marked crashed meanwhile (its lease ran out while the database was out of
            # reach): its prompts went back to the queue, and it must take no more. Or
            # cancelled while it was queued: it takes none.
            return []
        prompts = claim(
            session,
            job_id,
            lease,
            limit=left,
            tags=params.tags,
            order=params.order,
            shard=Shard(params.shard, params.shards),
            resume_of=params.resume_job,
            # A batch is a queue for the engine's rows (continuous batching): rows whose
            # articles end take its waiting prompts, so only its last articles decode beside
            # idle rows.
            budget=params.batch_size * settings.queue_depth,
            size=lambda prompt: len(params.variants_of(prompt)),
        )
        articles = sum(len(params.variants_of(p)) for p in prompts)
        plan = plan_batches(prompts, params, max(articles, 1))  # one batch, in batch order
        add_claimed(session, job_id, articles)
        progress_for(job_id).claimed(job.total, more=bool(prompts))
        if prompts:
            starting(job_id, number, "claim")
    return plan.batches[0] if plan.batches else []


def plan_run(settings: Settings, params: GenerateParams) -> RunPlan:
    """A dry run: the batches a run of `params` would write if no other run took any. Claims
    nothing, writes nothing."""
    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    with context_for(settings).database.session(write=False) as session:
        prompts = _peek(session, params)
    return plan_batches(prompts, params, params.batch_size * settings.queue_depth)


def claimable(settings: Settings, params: GenerateParams) -> int:
    """How many prompts a run of `params` would claim now; claims nothing. Asked before a run
    starts, so one with nothing to do answers at once, without Prefect or a model. Jobs whose
    process is seen gone are marked crashed first: their prompts are there to take."""
    with context_for(settings).database.session() as session:
        reconcile(session, settings.max_attempts)
        count = count_claimable(session, tags=params.tags, shard=Shard(params.shard, params.shards))
    return count if params.limit is None else min(count, params.limit)


def _peek(session: Session, params: GenerateParams) -> list[Prompt]:
    """The prompts a run of `params` would claim now, if no other run took any."""
    shard = Shard(params.shard, params.shards)
    return claimable_prompts(session, params.limit, params.tags, params.order, shard)


def _estimate(session: Session, params: GenerateParams) -> int:
    """The articles of every prompt a run of `params` could claim now."""
    return sum(len(params.variants_of(p)) for p in _peek(session, params))
