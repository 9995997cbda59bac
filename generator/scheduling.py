"""Which requests run together: groups of shared settings, batches within memory, OOM splits.

Requests are grouped by what a batch must share (`batch_key`), sorted by prompt length so
padding stays small, and cut into batches of at most `batch_size` rows whose key/value cache
stays within `cache_tokens` positions. A batch that runs out of GPU memory is halved and tried
again, down to one row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence

import torch

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.requests import GenerationFailure, Outcome, Prepared

__all__ = ["batch_key", "batches", "run_splitting", "schedule"]


def batch_key(config: DecodingConfig) -> Hashable:
    """What a batch must share. Sampling settings vary per row; beam search shares all."""
    if config.num_beams > 1:
        return ("beam", config.model_copy(update={"seed": None, "noise_sigma": 0.0}))
    return ("loop", config.no_repeat_ngram_size, config.stop_strings)


def schedule(
    prepared: Iterable[Prepared], batch_size: int, cache_tokens: int | None
) -> list[list[Prepared]]:
    """Every request in some batch: grouped by `batch_key`, shortest prompts first."""
    groups: dict[Hashable, list[Prepared]] = defaultdict(list)
    for item in prepared:
        groups[batch_key(item.request.config)].append(item)
    planned: list[list[Prepared]] = []
    for members in groups.values():
        # Similar lengths together: less padding, less wasted arithmetic.
        members.sort(key=lambda p: len(p.ids))
        planned += batches(members, batch_size, cache_tokens)
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


Run = Callable[[list[Prepared]], list[tuple[Prepared, Outcome]]]


def run_splitting(batch: list[Prepared], run: Run) -> list[tuple[Prepared, Outcome]]:
    """`run(batch)`, halving the batch on out-of-memory until a single row fails alone."""
    try:
        return run(batch)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            failure = GenerationFailure(
                batch[0].request.key,
                "out of GPU memory even alone: lower max_new_tokens or use a smaller model",
            )
            return [(batch[0], failure)]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        return run_splitting(batch[:half], run) + run_splitting(batch[half:], run)
