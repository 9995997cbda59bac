"""Which requests run together: groups of shared settings, batches within memory, OOM splits.

Requests are grouped by what a batch must share (`batch_key`) and sorted by prompt length so
padding stays small. Under continuous batching (`generator.continuous`) a group runs as one queue
through at most `batch_size` rows, whose width and number follow its prompts within the cache
budget; otherwise (beam search, models with transformers' own cache) it is cut into batches of
at most `batch_size` rows whose key/value cache stays within `cache_tokens` positions
(`batches`). A batch that runs out of GPU memory runs again on half the rows, down to one row.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.requests import GenerationFailure, Outcome, Prepared

__all__ = ["Batch", "batch_key", "batches", "run_splitting", "schedule"]


@dataclass(frozen=True)
class Batch:
    """Requests that run together, at most `rows` of them at once: with `continuous`, a queue
    whose finished rows are refilled; otherwise every request in its own row."""

    members: list[Prepared]
    rows: int
    continuous: bool = False
    # A queue's cache budget (positions, rows x width): its rows widen and fall within it.
    cache_tokens: int | None = None


def batch_key(config: DecodingConfig) -> Hashable:
    """What a batch must share. Sampling settings vary per row; beam search shares all."""
    if config.num_beams > 1:
        return ("beam", config.model_copy(update={"seed": None, "noise_sigma": 0.0}))
    return ("loop", config.no_repeat_ngram_size, config.stop_strings)


def schedule(
    prepared: Iterable[Prepared],
    batch_size: int,
    cache_tokens: int | None,
    continuous: bool = True,
) -> list[Batch]:
    """Every request in some batch: grouped by `batch_key`, shortest prompts first. With
    `continuous`, sampled and greedy groups run as queues (beam search never does)."""
    groups: dict[Hashable, list[Prepared]] = defaultdict(list)
    for item in prepared:
        groups[batch_key(item.request.config)].append(item)
    planned: list[Batch] = []
    for members in groups.values():
        # Similar lengths together: less padding, less wasted arithmetic.
        members.sort(key=lambda p: len(p.ids))
        if continuous and members[0].request.config.num_beams == 1:
            # One queue: cutting it where prompts grow longer gave each piece a tail of its
            # own, rows idling while its last articles ran (bench/README.md).
            planned.append(Batch(members, batch_size, True, cache_tokens))
        else:
            planned += [Batch(b, len(b)) for b in batches(members, batch_size, cache_tokens)]
    return planned


def batches(
    members: Sequence[Prepared], batch_size: int, cache_tokens: int | None
) -> list[list[Prepared]]:
    """Cut requests sorted by length into batches of at most `batch_size` rows whose cache
    stays within `cache_tokens`. A single request always makes a batch: one too long for the
    budget still runs, alone."""
    cut: list[list[Prepared]] = []
    batch: list[Prepared] = []
    steps = 0
    for prepared in members:
        # Sorted by length: the newest row is the longest, so it sets the batch's width.
        wider = max(steps, prepared.request.config.max_new_tokens)
        # Beam search keeps num_beams rows of cache per request (a group shares it).
        beams = prepared.request.config.num_beams
        cache = (len(batch) + 1) * beams * (len(prepared.ids) + wider)
        if batch and (
            len(batch) == batch_size or (cache_tokens is not None and cache > cache_tokens)
        ):
            cut.append(batch)
            batch, wider = [], prepared.request.config.max_new_tokens
        batch.append(prepared)
        steps = wider
    if batch:
        cut.append(batch)
    return cut


Run = Callable[[Batch], list[tuple[Prepared, Outcome]]]


def run_splitting(batch: Batch, run: Run) -> list[tuple[Prepared, Outcome]]:
    """`run(batch)`; on out-of-memory, again on half the rows (a queue keeps its requests, a
    plain batch is halved), until a single request fails alone."""
    try:
        return run(batch)
    except torch.OutOfMemoryError:
        pass
    # Retried outside the `except`: its traceback holds the failed run's cache, which must be
    # freed before a smaller run can fit.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    members = batch.members
    rows = min(batch.rows, len(members))  # rows never used would halve for nothing
    if batch.continuous and rows > 1:
        # The budget too: where it, not `rows`, set the rows in use, halving only `rows`
        # would run the same rows again.
        budget = batch.cache_tokens // 2 if batch.cache_tokens is not None else None
        return run_splitting(replace(batch, rows=rows // 2, cache_tokens=budget), run)
    if len(members) == 1:
        failure = GenerationFailure(
            members[0].request.key,
            "out of GPU memory even alone: lower max_new_tokens or use a smaller model",
        )
        return [(members[0], failure)]
    half = len(members) // 2
    return [
        outcome
        for part in (members[:half], members[half:])
        for outcome in run_splitting(replace(batch, members=part, rows=min(rows, len(part))), run)
    ]
