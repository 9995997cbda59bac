"""Claims and leases: which run holds which prompts, and until when.

A run claims prompts atomically (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent runs take
disjoint prompts without waiting for each other; SQLite: the write transaction, `BEGIN
IMMEDIATE`, serialises claims). Each claim carries a lease that the run renews while it works,
and the job carries one too. A lease that runs out means the run's process died: the next run
marks its job `crashed` and gives its prompts back (`reconcile`), and `claim` takes a prompt
whose lease ran out even before that. Writing back checks the claim (`held_by`), so a run that
lost its claim cannot write a second copy of an article.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from articlegen.db.backends import json_has_any
from articlegen.db.models import Job, JobStatus, Prompt, PromptStatus, utcnow
from articlegen.db.session import in_chunks

__all__ = ["Shard", "claim", "count_claimable", "held_by", "reconcile", "release", "renew"]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the prompts whose id is `index` modulo `count`. Runs on
    different shards never compete for the same prompts."""

    index: int = 0
    count: int = 1


def claim(
    session: Session,
    job_id: int,
    lease: timedelta,
    limit: int | None = None,
    tags: Sequence[str] = (),
    order: str = "priority",
    shard: Shard | None = None,
    resume_of: int | None = None,
) -> list[Prompt]:
    """Take claimable prompts for `job_id` until now + `lease`, counting the attempt.

    Claimable: pending, or claimed under a lease that ran out. Highest priority first (or
    oldest first with order="fifo"); with `tags`, only prompts carrying one of them; with
    `shard`, only that shard's; with `resume_of`, only the pending prompts that job claimed
    last (a crashed, failed or cancelled job's unfinished work). The caller's transaction
    makes the claim atomic.
    """
    now = utcnow()
    query = _claimable(session, select(Prompt), tags, order, shard, resume_of)
    if limit is not None:
        query = query.limit(limit)
    # Concurrent runs must not take the same prompts: PostgreSQL locks the rows it returns
    # (only those: the tag filter and the limit are in the query) and other runs skip them;
    # SQLite's write transaction already serialises claims.
    query = query.with_for_update(skip_locked=True)
    claimed = list(session.scalars(query))
    for prompt in claimed:
        prompt.status = PromptStatus.CLAIMED
        prompt.claimed_by = job_id
        prompt.lease_expires_at = now + lease
        prompt.attempts += 1
    session.flush()
    return claimed


def count_claimable(
    session: Session,
    tags: Sequence[str] = (),
    shard: Shard | None = None,
    resume_of: int | None = None,
) -> int:
    """How many prompts `claim` with these filters would take now, without taking any: a run
    with nothing to do can say so before it starts."""
    query = _claimable(session, select(func.count(Prompt.id)), tags, None, shard, resume_of)
    return int(session.scalar(query) or 0)


def _claimable(
    session: Session,
    query: Select[Any],
    tags: Sequence[str],
    order: str | None,
    shard: Shard | None,
    resume_of: int | None,
) -> Select[Any]:
    """`query` narrowed to the prompts a claim may take, in claiming order (`order` None: any
    order, for counting)."""
    claimable = or_(
        Prompt.status == PromptStatus.PENDING,
        and_(Prompt.status == PromptStatus.CLAIMED, Prompt.lease_expires_at < utcnow()),
    )
    query = query.where(claimable)
    if resume_of is not None:
        query = query.where(Prompt.status == PromptStatus.PENDING, Prompt.claimed_by == resume_of)
    if shard is not None and shard.count > 1:
        query = query.where(Prompt.id % shard.count == shard.index)
    if order == "priority":
        query = query.order_by(Prompt.priority.desc(), Prompt.id)
    elif order is not None:
        query = query.order_by(Prompt.id)
    if tags:
        dialect = session.get_bind().dialect.name
        query = query.where(json_has_any(dialect, Prompt.tags, tags))
    return query


def renew(session: Session, job_id: int, lease: timedelta) -> int:
    """Extend the leases of the job and of every prompt it holds; returns the prompts held.

    One statement each, so a renewal holds SQLite's write lock for milliseconds.
    """
    until = utcnow() + lease
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(lease_expires_at=until)
    )
    renewed = session.execute(
        update(Prompt)
        .where(Prompt.claimed_by == job_id, Prompt.status == PromptStatus.CLAIMED)
        .values(lease_expires_at=until)
    )
    return int(renewed.rowcount or 0)  # type: ignore[attr-defined]


def held_by(session: Session, job_id: int, prompt_ids: Sequence[int]) -> set[int]:
    """Which of `prompt_ids` `job_id` still holds, locked until the transaction ends, so a
    write-back settles only prompts no other run has taken over."""
    held: set[int] = set()
    for chunk in in_chunks(prompt_ids):
        query = (
            select(Prompt.id)
            .where(
                Prompt.id.in_(chunk),
                Prompt.status == PromptStatus.CLAIMED,
                Prompt.claimed_by == job_id,
            )
            .with_for_update()
        )
        held.update(session.scalars(query))
    return held


def release(session: Session, job_id: int, prompt_ids: Sequence[int] | None = None) -> int:
    """Give prompts `job_id` holds back to `pending` (all of them, or those of `prompt_ids`).

    `claimed_by` stays: it names the job that held them last, for `jobs resume`.
    """
    held = and_(Prompt.claimed_by == job_id, Prompt.status == PromptStatus.CLAIMED)
    values = {"status": PromptStatus.PENDING, "lease_expires_at": None}
    if prompt_ids is None:
        result = session.execute(update(Prompt).where(held).values(**values))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
    released = 0
    for chunk in in_chunks(prompt_ids):
        result = session.execute(update(Prompt).where(held, Prompt.id.in_(chunk)).values(**values))
        released += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return released


def reconcile(session: Session) -> list[int]:
    """Mark running jobs whose lease ran out `crashed` and give their prompts back; their
    finished articles stay. Returns the crashed jobs' ids."""
    now = utcnow()
    dead = list(
        session.scalars(
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        )
    )
    for job in dead:
        expired = job.lease_expires_at
        job.status = JobStatus.CRASHED
        job.finished_at = now
        job.error = (
            f"its process stopped renewing its lease (last good until {expired:%Y-%m-%d %H:%M:%S} "
            "UTC): it died or lost the database. Finished articles are kept; "
            f"`articlegen jobs resume {job.id}` writes the rest."
        )
        release(session, job.id)
    session.flush()
    return [job.id for job in dead]
