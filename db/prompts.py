"""Prompt use cases: store incoming prompts idempotently, and list what is there.

An incoming prompt is matched to a stored prompt by its external id, or, without one, by its
content key. A match that is still pending takes the new values; one already claimed, done or
failed is kept as it is, so re-importing a file never disturbs work in progress or finished
articles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from articlegen.db.models import Prompt, PromptStatus, utcnow
from articlegen.db.session import in_chunks

__all__ = [
    "IncomingPrompt",
    "UpsertPlan",
    "apply_upsert",
    "count_prompts",
    "list_prompts",
    "plan_upsert",
]


class IncomingPrompt(Protocol):
    """A validated prompt ready to store (`articlegen.importing.PromptSpec` is one)."""

    @property
    def external_id(self) -> str | None:
        """The client's id, if any: its identity across imports."""
        ...

    def content_key(self) -> str:
        """A digest of everything the prompt says: its identity when it has no external id."""
        ...

    def columns(self) -> dict[str, Any]:
        """Its values for the `prompts` table's columns (content_key aside)."""
        ...


@dataclass
class UpsertPlan:
    """What storing a batch of specs will do; `apply_upsert` carries it out."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[Prompt, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    kept_processed: int = 0


def _columns(spec: IncomingPrompt, key: str) -> dict[str, Any]:
    return {**spec.columns(), "content_key": key}


def plan_upsert(session: Session, specs: Sequence[IncomingPrompt]) -> UpsertPlan:
    """Decide, for each incoming prompt, insert, update or leave alone; reads only."""
    keyed = [(spec, spec.content_key()) for spec in specs]
    ids = [s.external_id for s, _ in keyed if s.external_id is not None]
    by_id: dict[str, Prompt] = {}
    for chunk in in_chunks(ids):
        for prompt in session.scalars(select(Prompt).where(Prompt.external_id.in_(chunk))):
            by_id[prompt.external_id or ""] = prompt
    # Content keys are looked up for rows without an id, and for rows whose id is new: such a
    # row may be a prompt imported earlier without its id, which it then adopts.
    keys = [k for s, k in keyed if s.external_id is None or s.external_id not in by_id]
    by_key: dict[str, Prompt] = {}
    for chunk in in_chunks(keys):
        query = select(Prompt).where(Prompt.external_id.is_(None), Prompt.content_key.in_(chunk))
        for prompt in session.scalars(query):
            by_key[prompt.content_key] = prompt

    plan = UpsertPlan()
    for spec, key in keyed:
        found = by_id.get(spec.external_id) if spec.external_id else by_key.get(key)
        if found is None and spec.external_id is not None and key in by_key:
            adopted = by_key.pop(key)  # one row adopts it; a second gets a prompt of its own
            plan.updates.append((adopted, {"external_id": spec.external_id}))
        elif found is None:
            plan.inserts.append(_columns(spec, key))
        elif found.content_key == key:
            plan.unchanged += 1
        elif found.status != PromptStatus.PENDING:
            plan.kept_processed += 1
        else:
            plan.updates.append((found, _columns(spec, key)))
    return plan


def apply_upsert(session: Session, plan: UpsertPlan) -> None:
    """Write a plan in the caller's transaction."""
    for prompt, values in plan.updates:
        for name, value in values.items():
            setattr(prompt, name, value)
    if plan.inserts:
        now = utcnow()
        rows = [{**row, "created_at": now, "updated_at": now} for row in plan.inserts]
        # render_nulls: rows whose None-valued columns differ still go out in one batch (the ORM
        # otherwise splits the batch at every change in which keys are None).
        session.execute(insert(Prompt).execution_options(render_nulls=True), rows)
    session.flush()


def list_prompts(
    session: Session, status: PromptStatus | None = None, limit: int | None = None
) -> list[Prompt]:
    """Prompts in the order they will run: highest priority first, then oldest."""
    query = select(Prompt).order_by(Prompt.priority.desc(), Prompt.id)
    if status is not None:
        query = query.where(Prompt.status == status)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_prompts(session: Session) -> dict[PromptStatus, int]:
    """How many prompts are in each status (every status present, zeros included)."""
    counts = dict.fromkeys(PromptStatus, 0)
    for status, n in session.execute(select(Prompt.status, func.count()).group_by(Prompt.status)):
        counts[status] = n
    return counts
