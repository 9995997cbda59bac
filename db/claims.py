"""Claims and leases: which run holds which prompts, and until when.

Runs share one queue: each claims a batch at a time (`claim` with a `budget` of articles), so any
number of runs, on any number of machines, take the highest-priority prompts left and finish
together. A claim is atomic (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent runs take
disjoint prompts without waiting for each other; SQLite: the write transaction, `BEGIN
IMMEDIATE`, serialises claims). Each claim carries a lease that the run renews while it works,
and the job carries one too, with its process (`core.process`).

A run is dead when its lease runs out, or, seen from its own host, as soon as its process is
gone: `reconcile` marks its job `crashed` and gives its prompts back, and `claim` takes a prompt
whose lease ran out even before that. Writing back checks the claim (`held_by`), so a run that
lost its claim cannot write a second copy of an article. A prompt claimed `max_attempts` times
without being written fails instead of going back (`release`): a prompt that kills its run must
not kill every run after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from articlegen.core.process import ProcessIdentity, alive
from articlegen.db.backends import json_has_any
from articlegen.db.models import Job, JobStatus, Prompt, PromptStatus, utcnow
from articlegen.db.session import in_chunks

__all__ = [
    "Shard",
    "claim",
    "claimable_prompts",
    "count_claimable",
    "held_by",
    "note_failure",
    "reconcile",
    "release",
    "renew",
]

# How much failure history a prompt keeps: its latest failures, enough to see a pattern.
HISTORY = 20


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
    budget: int | None = None,
    size: Callable[[Prompt], int] = lambda prompt: 1,
) -> list[Prompt]:
    """Take claimable prompts for `job_id` until now + `lease`, counting the attempt.

    Claimable: pending, or claimed under a lease that ran out. Highest priority first (or
    oldest first with order="fifo"); with `tags`, only prompts carrying one of them; with
    `shard`, only that shard's; with `resume_of`, that job's unfinished prompts before any
    other. At most `limit` prompts, and with `budget`, only as many as make at most `budget`
    articles (`size` of each; always at least one prompt). The caller's transaction makes the
    claim atomic.
    """
    now = utcnow()
    query = _claimable(session, select(Prompt), tags, order, shard, resume_of)
    most = limit if budget is None else min(budget, limit or budget)
    if most is not None:
        query = query.limit(most)  # every prompt makes at least one article
    # Concurrent runs must not take the same prompts: PostgreSQL locks the rows it returns
    # (only those: the tag filter and the limit are in the query) and other runs skip them;
    # SQLite's write transaction already serialises claims.
    query = query.with_for_update(skip_locked=True)
    claimed: list[Prompt] = []
    articles = 0
    for prompt in session.scalars(query):
        articles += size(prompt)
        if claimed and budget is not None and articles > budget:
            break  # the rows left are unlocked when the transaction ends
        claimed.append(prompt)
    for prompt in claimed:
        prompt.status = PromptStatus.CLAIMED
        prompt.claimed_by = job_id
        prompt.lease_expires_at = now + lease
        prompt.attempts += 1
    session.flush()
    return claimed


def claimable_prompts(
    session: Session,
    limit: int | None = None,
    tags: Sequence[str] = (),
    order: str = "priority",
    shard: Shard | None = None,
) -> list[Prompt]:
    """The prompts `claim` with these filters would take now, in its order, without taking
    them: what a dry run plans."""
    query = _claimable(session, select(Prompt), tags, order, shard, None)
    return list(session.scalars(query if limit is None else query.limit(limit)))


def count_claimable(
    session: Session,
    tags: Sequence[str] = (),
    shard: Shard | None = None,
) -> int:
    """How many prompts `claim` with these filters would take now, without taking any: a run
    with nothing to do can say so before it starts."""
    query = _claimable(session, select(func.count(Prompt.id)), tags, None, shard, None)
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
    if shard is not None and shard.count > 1:
        query = query.where(Prompt.id % shard.count == shard.index)
    keys: list[Any] = []
    if order is not None and resume_of is not None:
        # A resumed job first finishes what its dead run had taken.
        keys.append(case((Prompt.claimed_by == resume_of, 0), else_=1))
    if order == "priority":
        keys.append(Prompt.priority.desc())
    if order is not None:
        query = query.order_by(*keys, Prompt.id)
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


def note_failure(prompt: Prompt, job_id: int | None, error: str) -> None:
    """Record a failure of `prompt`: its last error, and one more entry of its history."""
    prompt.last_error = error
    entry = {"job": job_id, "attempt": prompt.attempts, "error": error, "at": utcnow().isoformat()}
    # A new list: the ORM sees an assignment, not a change inside the JSON value.
    prompt.errors = [*(prompt.errors or []), entry][-HISTORY:]


def release(
    session: Session,
    job_id: int,
    prompt_ids: Sequence[int] | None = None,
    max_attempts: int | None = None,
    error: str | None = None,
    uncount: bool = False,
) -> list[Prompt]:
    """Give prompts `job_id` holds back to `pending` (all of them, or those of `prompt_ids`);
    returns those that went back.

    With `error`, their attempt failed for that reason (it goes into their history), and with
    `max_attempts` a prompt claimed that many times fails instead of going back. With
    `uncount`, the claim is not counted as an attempt (a run stopped on purpose). Prompts
    another transaction has locked are left to it: a run claiming them as we speak.
    `claimed_by` stays: it names the job that held them last, for `jobs resume`.
    """
    held = [Prompt.claimed_by == job_id, Prompt.status == PromptStatus.CLAIMED]
    chunks = [None] if prompt_ids is None else in_chunks(prompt_ids)
    released: list[Prompt] = []
    for chunk in chunks:
        where = held if chunk is None else [*held, Prompt.id.in_(chunk)]
        # Locked, and only rows no one else has locked: each row is then ours to change as it
        # is now, and a release never waits on a claim (which may be waiting on this job).
        query = select(Prompt).where(*where).order_by(Prompt.id).with_for_update(skip_locked=True)
        for prompt in session.scalars(query):
            prompt.lease_expires_at = None
            if uncount:
                prompt.attempts = max(0, prompt.attempts - 1)
            if error is not None:
                note_failure(prompt, job_id, error)
            if max_attempts is not None and prompt.attempts >= max_attempts:
                prompt.status = PromptStatus.FAILED
                note_failure(
                    prompt,
                    job_id,
                    f"claimed {prompt.attempts} times without being written (at most "
                    f"ARTICLEGEN_MAX_ATTEMPTS={max_attempts}): its runs died or failed each "
                    f"time; `articlegen prompts retry {prompt.id}` with a higher "
                    "ARTICLEGEN_MAX_ATTEMPTS requeues it",
                )
            else:
                prompt.status = PromptStatus.PENDING
                released.append(prompt)
    session.flush()
    return released


def _gone(job: Job) -> bool:
    """Whether the job's process is seen gone, from its own host."""
    if job.host is None or job.pid is None:
        return False
    return alive(ProcessIdentity(job.host, job.pid, job.process_started)) is False


def _dead(job: Job, now: datetime) -> str | None:
    """Why the job is dead (its process is gone, or its lease ran out), or None."""
    if _gone(job):
        return f"its process (pid {job.pid} on {job.host}) is gone: it was killed or crashed"
    expires = job.lease_expires_at
    if job.status is JobStatus.RUNNING and expires is not None and expires < now:
        until = f"{expires:%Y-%m-%d %H:%M:%S}"
        return (
            f"its process stopped renewing its lease (last good until {until} UTC): it died or "
            "lost the database"
        )
    return None


def reconcile(session: Session, max_attempts: int | None = None) -> list[int]:
    """Mark queued or running jobs whose process is gone (seen from its host) or whose lease
    ran out `crashed`, and give their prompts back (those claimed `max_attempts` times fail);
    their finished articles stay. Returns the crashed jobs' ids."""
    now = utcnow()
    alive_states = (JobStatus.QUEUED, JobStatus.RUNNING)
    # Looked at without locks: a live run's job row is its own to update (its claims count on
    # it), and locking it here would make that run wait on us while we wait on its prompts.
    looked = session.scalars(select(Job).where(Job.status.in_(alive_states))).all()
    dead: list[int] = []
    for job_id in [job.id for job in looked if _dead(job, now) is not None]:
        # Then each dead one alone, locked, and looked at again as it is now.
        job = session.scalars(
            select(Job)
            .where(Job.id == job_id, Job.status.in_(alive_states))
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()
        why = None if job is None else _dead(job, now)
        if job is None or why is None:
            continue
        job.status = JobStatus.CRASHED
        job.finished_at = now
        job.lease_expires_at = None
        job.error = (
            f"{why}. Finished articles are kept; its unfinished prompts went back to the queue "
            f"(`articlegen jobs resume {job.id}` finishes its work)."
        )
        release(session, job.id, max_attempts=max_attempts, error=f"job {job.id}: {why}")
        dead.append(job.id)
    session.flush()
    return dead
