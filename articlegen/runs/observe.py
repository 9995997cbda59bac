"""A seam for tests: who hears each step of a run as it starts.

Empty in a normal run. Tests pause a step (to see the next batch generate while this one
finishes), fail it (to see what a run gives back), or kill the whole process there (to see what
a crash at that point loses: nothing), without patching our code. The steps, in a run's order:

- `claim`: inside the transaction that claims a batch, before it commits (number: the batch's);
- `generate`: a batch starts generating;
- `finish`: a generated batch starts its post-processing and rendering;
- `record`: inside the transaction that records a batch, before it commits;
- `close`: inside the transaction that closes the job, before it commits (number 0).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["BatchObserver", "BatchStep", "observing_batches", "starting"]

BatchStep = Literal["claim", "generate", "finish", "record", "close"]
BatchObserver = Callable[[int, int, BatchStep], None]

_observers: list[BatchObserver] = []
_observers_lock = threading.Lock()


@contextmanager
def observing_batches(observer: BatchObserver) -> Iterator[None]:
    """Call `observer(job_id, number, step)` as each step starts, in the thread that runs it,
    while inside. An observer that raises fails the step, as a fault there would."""
    with _observers_lock:
        _observers.append(observer)
    try:
        yield
    finally:
        with _observers_lock:
            _observers.remove(observer)


def starting(job_id: int, number: int, step: BatchStep) -> None:
    """Tell the observers that `step` of batch `number` of `job_id` starts."""
    with _observers_lock:
        observers = list(_observers)
    for observer in observers:
        observer(job_id, number, step)
