"""A run's next batch, prepared while the current one generates.

The flow claims batch k+1 before batch k generates, and hands it to batch k's generation: the
engine's rows that free up in batch k's tail start k+1's articles (`Engine.generate`'s
`ahead`), so a run meets the queue's tail once, at its end, not once per batch. Batch k+1's
inputs are built then, and must be the very ones its own generation uses: an unseeded article
draws a fresh seed, and the engine goes on with the rows it started only for the same
requests. They wait here, per job, in this process, until that generation takes them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from articlegen.db.articles import PromptFailure

if TYPE_CHECKING:
    from articlegen.generator.articles import ArticleInput

__all__ = ["BatchInputs", "forget_upcoming", "keep_upcoming", "take_upcoming"]


@dataclass(frozen=True)
class BatchInputs:
    """A batch's articles as the engine gets them, and what building them found."""

    prompt_ids: tuple[int, ...]  # the batch's prompts, in batch order
    inputs: tuple[ArticleInput, ...]  # one per article
    planned: dict[int, int]  # articles planned per prompt
    failures: tuple[PromptFailure, ...]  # prompts whose settings are invalid: not generated
    warnings: tuple[str, ...]  # decoding warnings of its prompts
    seconds: float  # spent reading the prompts and building the inputs


_upcoming: dict[int, BatchInputs] = {}
_lock = threading.Lock()


def keep_upcoming(job_id: int, batch: BatchInputs) -> None:
    """Keep job `job_id`'s next batch until its generation takes it."""
    with _lock:
        _upcoming[job_id] = batch


def take_upcoming(job_id: int, prompt_ids: list[int]) -> BatchInputs | None:
    """The inputs kept for job `job_id`'s batch of `prompt_ids`, if those are the ones kept;
    taken once (a retry of that batch builds its own)."""
    with _lock:
        kept = _upcoming.pop(job_id, None)
    return kept if kept is not None and kept.prompt_ids == tuple(prompt_ids) else None


def forget_upcoming(job_id: int) -> None:
    """Drop what a finished run kept."""
    with _lock:
        _upcoming.pop(job_id, None)
