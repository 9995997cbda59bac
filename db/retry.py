"""Retrying failed prompts: back to pending, with their failure history kept.

A prompt fails for a reason someone can fix (an unknown preset typed in a form, a template that
did not render, a run that died on it too often); once it is fixed, `requeue_failed` gives the
prompt back to the queue. Its `errors` stay, so the next failure adds to what came before. A
prompt claimed `max_attempts` times is not requeued: that setting is what stops a prompt that
kills every run from being retried forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from articlegen.core.errors import JobStateError, NotFoundError
from articlegen.db.jobs import get_job
from articlegen.db.models import Article, Prompt, PromptStatus

__all__ = ["Requeued", "name_prompts", "requeue_failed"]


@dataclass(frozen=True)
class Requeued:
    """What a retry did: the prompts now pending, and the failed ones a bulk retry left out:
    claimed `max_attempts` times already, or with an article of every variant already (a run
    with more `--variants` than the prompt's failed: only a review's regenerate can say which
    to write again)."""

    prompts: list[int]
    exhausted: list[int]
    complete: list[int]


def requeue_failed(
    session: Session,
    ids: Sequence[int] = (),
    job_id: int | None = None,
    all_failed: bool = False,
    max_attempts: int = 3,
) -> Requeued:
    """Give failed prompts back to the queue: those of `ids`, those `job_id` failed, or every
    failed prompt. Named ids must all exist, be failed and have attempts left, or nothing is
    requeued (`NotFoundError`, `JobStateError`); a bulk retry skips exhausted prompts."""
    query = select(Prompt).where(Prompt.status == PromptStatus.FAILED).order_by(Prompt.id)
    named = sorted(set(ids))
    if named:
        found = {p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(named)))}
        missing = [i for i in named if i not in found]
        if missing:
            raise NotFoundError(
                f"no {name_prompts(missing)}: `articlegen prompts list --status failed` shows the "
                "failed ones"
            )
        not_failed = [p for p in found.values() if p.status is not PromptStatus.FAILED]
        if not_failed:
            first = not_failed[0]
            raise JobStateError(
                f"prompt {first.id} is {first.status.value}, not failed: only failed prompts "
                "can be retried (nothing was requeued)"
            )
        query = query.where(Prompt.id.in_(named))
    if job_id is not None:
        get_job(session, job_id)  # a typo'd job is an error, not "nothing failed"
        query = query.where(Prompt.claimed_by == job_id)
    if not (named or job_id is not None or all_failed):
        raise ValueError("name prompts, a job, or all_failed")
    prompts = list(session.scalars(query))
    exhausted = [p.id for p in prompts if p.attempts >= max_attempts]
    if named and exhausted:
        most = max(p.attempts for p in prompts if p.id in exhausted)
        times = "once" if most == 1 else f"{most} times"
        raise JobStateError(
            f"{name_prompts(exhausted)} has been claimed {times}, as often as "
            f"ARTICLEGEN_MAX_ATTEMPTS={max_attempts} allows: to retry anyway, raise "
            "ARTICLEGEN_MAX_ATTEMPTS for this command (nothing was requeued)"
        )
    retryable = [p for p in prompts if p.attempts < max_attempts]
    written = _written_variants(session, [p.id for p in retryable])
    requeued: list[int] = []
    complete: list[int] = []
    for prompt in retryable:
        # Variants already written stay: the retry writes only those a review queued again,
        # else only the missing ones, so each variant still has one article.
        done = written.get(prompt.id, set())
        missing = [v for v in range(1, prompt.variants + 1) if v not in done]
        if not prompt.regenerate and done and not missing:
            complete.append(prompt.id)
            continue
        if not prompt.regenerate:
            prompt.regenerate = missing if done else []
        prompt.status = PromptStatus.PENDING
        prompt.last_error = None  # its history keeps it
        prompt.lease_expires_at = None
        requeued.append(prompt.id)
    if named and complete:
        raise JobStateError(
            f"{name_prompts(complete)} already has an article of every variant: regenerate one "
            "from the review queue (`articlegen review regenerate ID`) instead (nothing was "
            "requeued)"
        )
    session.flush()
    return Requeued(requeued, exhausted, complete)


def _written_variants(session: Session, prompt_ids: Sequence[int]) -> dict[int, set[int]]:
    """The variants each prompt has an article of."""
    written: dict[int, set[int]] = {}
    if not prompt_ids:
        return written
    rows = session.execute(
        select(Article.prompt_id, Article.variant).where(Article.prompt_id.in_(prompt_ids))
    )
    for prompt_id, variant in rows:
        written.setdefault(prompt_id, set()).add(variant)
    return written


def name_prompts(ids: Sequence[int]) -> str:
    """`prompt 4` or `prompts 4, 7 and 3 more`: a message names what it is about."""
    shown = ", ".join(str(i) for i in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return f"prompt{'s' if len(ids) > 1 else ''} {shown}{more}"
