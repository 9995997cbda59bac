"""Planning a run: which prompts it takes, and how they are cut into batches.

A run claims its prompts under a lease (`db.claims`), then batches them: highest priority first
(or oldest first), and within one priority by length, so a batch holds prompts of similar
length. A prompt's variants stay in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from articlegen.core.settings import Settings
from articlegen.db.claims import Shard, claim, count_claimable, reconcile
from articlegen.db.jobs import check_resumable, start_job
from articlegen.db.models import Prompt
from articlegen.runs.context import context_for
from articlegen.runs.params import GenerateParams
from articlegen.runs.progress import progress_for

__all__ = ["RunPlan", "claim_batches", "claimable", "plan_batches", "variants_of"]


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


def variants_of(prompt: Prompt, params: GenerateParams) -> list[int]:
    """The variants a run writes for `prompt`: those queued by a review, else all of them."""
    if prompt.regenerate:
        return sorted(set(prompt.regenerate))
    return list(range(1, (params.variants or prompt.variants) + 1))


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
        count = len(variants_of(prompt, params))
        if not batches or size + count > batch_size:
            batches.append([])
            size = 0
        batches[-1].append(prompt.id)
        size += count
    articles = sum(len(variants_of(p, params)) for p in prompts)
    return RunPlan(batches=batches, prompts=len(prompts), articles=articles)


def claim_batches(
    settings: Settings, job_id: int, params: GenerateParams, flow_run_id: str | None = None
) -> RunPlan:
    """Claim pending prompts for the job, under a lease, and plan its batches. Jobs whose
    process died are marked crashed first, so their prompts can be claimed. A dry run claims
    nothing."""
    if params.batch_size is None:
        raise ValueError("choose_batch_size() first: the run's batch size is not set")
    lease = timedelta(seconds=settings.lease_seconds)
    with context_for(settings).database.session() as session:
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
        # A batch is a queue for the engine's rows (continuous batching): rows whose articles
        # end take its waiting prompts, so only its last articles decode beside idle rows.
        plan = plan_batches(prompts, params, params.batch_size * settings.queue_depth)
        if params.dry_run:
            session.rollback()  # a dry run only looks
            return plan
        start_job(session, job_id, plan.articles, flow_run_id, lease)
    progress_for(job_id).plan(plan.articles)
    return plan


def claimable(settings: Settings, params: GenerateParams) -> int:
    """How many prompts a run of `params` would claim now; claims nothing, writes nothing. Asked
    before a run starts, so one with nothing to do answers at once, without Prefect or a
    model."""
    with context_for(settings).database.session(write=False) as session:
        count = count_claimable(
            session,
            tags=params.tags,
            shard=Shard(params.shard, params.shards),
            resume_of=params.resume_job,
        )
    return count if params.limit is None else min(count, params.limit)
