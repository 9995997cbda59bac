"""Which requests run together: groups of shared settings, batches within memory, OOM splits.

Requests are grouped by what a batch must share (`batch_key`) and sorted by prompt length so
padding stays small. Under continuous batching (`generator.continuous`) a group runs as a queue
through at most `batch_size` rows, cut only where longer prompts would force fewer rows into the
cache budget (`segments`); otherwise (beam search, models with transformers' own cache) it is cut
into batches of at most `batch_size` rows whose key/value cache stays within `cache_tokens`
positions (`batches`). A batch that runs out of GPU memory runs again on half the rows, down to
one row.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.requests import GenerationFailure, Outcome, Prepared

__all__ = ["Batch", "batch_key", "batches", "run_splitting", "schedule", "segments"]


@dataclass(frozen=True)
class Batch:
    """Requests that run together, at most `rows` of them at once: with `continuous`, a queue
    whose finished rows are refilled; otherwise every request in its own row."""

    members: list[Prepared]
    rows: int
    continuous: bool = False


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
            planned += segments(members, batch_size, cache_tokens)
        else:
            planned += [Batch(b, len(b)) for b in batches(members, batch_size, cache_tokens)]
    return planned


def segments(members: Sequence[Prepared], batch_size: int, cache_tokens: int | None) -> list[Batch]:
    """Cut a queue sorted by prompt length where its rows would get a quarter fewer: every
    row's cache holds the segment's longest prompt and most new tokens, and the rows must fit
    `cache_tokens` together. Long prompts thus run in their own, narrower segment instead of
    narrowing the whole queue."""

    def rows(capacity: int) -> int:
        fit = batch_size if cache_tokens is None else max(1, cache_tokens // capacity)
        return min(batch_size, fit)

    cut: list[Batch] = []
    start, longest, steps, first = 0, 0, 0, 0
    for i, prepared in enumerate(members):
        wider = (
            max(longest, len(prepared.ids)),
            max(steps, prepared.request.config.max_new_tokens),
        )
        if i == start:
            first = rows(sum(wider))
        elif rows(sum(wider)) < 0.75 * first:
            cut.append(Batch(list(members[start:i]), rows(longest + steps), continuous=True))
            start = i
            wider = (len(prepared.ids), prepared.request.config.max_new_tokens)
            first = rows(sum(wider))
        longest, steps = wider
    if start < len(members):
        cut.append(Batch(list(members[start:]), rows(longest + steps), continuous=True))
    return cut


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
        return run_splitting(replace(batch, rows=rows // 2), run)
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
