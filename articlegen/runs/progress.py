"""How far a run is, article by article, while its batches are still generating.

A batch is written to the database whole, at its end, so the job row's counts move once per
batch; a batch can be the whole run. This process-local tracker hears every decoding step
instead (`generator.requests.DecodeStep`) and answers what a person watching wants: articles
finished of the total, tokens per second, the time left, or what the run is doing before the
first token (loading the model, measuring the batch size). The CLI's progress bar and the flow's
progress artifact both read it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from articlegen.generator.requests import DecodeStep

__all__ = ["ProgressSnapshot", "RunProgress", "forget_progress", "progress_for"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressSnapshot:
    """The run's progress at one moment."""

    total: int  # articles planned; 0 until the run has claimed its prompts
    done: int  # articles finished (written, or failed)
    fraction: float  # 0..1, counting the unfinished rows' share of their token budgets
    tokens: int
    tokens_per_second: float
    eta_seconds: float | None  # None until there is a rate to extrapolate from
    phase: str  # what the run does now, as a sentence

    def line(self) -> str:
        """`3/32 articles · 41 tokens/s · ETA 1:05`, as the CLI and the artifact show it."""
        parts = [f"{self.done}/{self.total} articles", f"{self.tokens_per_second:,.0f} tokens/s"]
        if self.eta_seconds is not None:
            minutes, seconds = divmod(round(self.eta_seconds), 60)
            parts.append(f"ETA {minutes}:{seconds:02d}")
        return " · ".join(parts)


@dataclass
class RunProgress:
    """One run's counters; thread-safe (the flow writes, a display thread reads)."""

    phase: str = "starting"
    _total: int = 0
    _settled: int = 0  # articles of finished batches (the batch's own count, failures included)
    _finished: int = 0  # rows finished in the running batch
    _running: float = 0.0
    _tokens: int = 0
    _started: float | None = None  # when the first token came: model loads don't count
    _last: float | None = None  # when the last token came: the rate stops when decoding does
    _listener_failed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[Callable[[ProgressSnapshot], None]] = field(default_factory=list)

    def plan(self, total: int) -> None:
        """The run will write `total` articles (an estimate while other runs share the queue:
        see `claimed`)."""
        with self._lock:
            self._total = total
            self.phase = "generating"

    def claimed(self, total: int, more: bool) -> None:
        """The run has claimed `total` articles so far; with `more` False, that is all it will
        claim (the queue is empty), and its total becomes exactly that."""
        with self._lock:
            self._total = max(self._total, total) if more else total

    def step(self, event: DecodeStep) -> None:
        """One decoding step of the running batch (`Engine.generate`'s `on_step`)."""
        with self._lock:
            now = time.monotonic()
            if self._started is None:
                self._started = now
            self._last = now
            self._tokens += event.tokens
            self._finished += event.finished
            self._running = event.running_fraction
        self._notify()

    def batch_started(self) -> None:
        """A batch starts, or starts again (a retry): what its rows reported is forgotten."""
        with self._lock:
            self._finished, self._running = 0, 0.0

    def batch_done(self, articles: int) -> None:
        """A batch of `articles` finished generating (its write-back follows, beside the next
        batch's generation): its own count replaces the rows heard so far (which miss articles
        that failed before generating)."""
        with self._lock:
            self._settled += articles
            self._finished, self._running = 0, 0.0
        self._notify()

    def snapshot(self) -> ProgressSnapshot:
        """The progress now."""
        with self._lock:
            total = self._total
            done = min(self._settled + self._finished, total) if total else 0
            units = min(self._settled + self._finished + self._running, float(total))
            elapsed = time.monotonic() - self._started if self._started is not None else 0.0
            decoding = (self._last or 0.0) - (self._started or 0.0)
            rate = self._tokens / decoding if decoding > 0 else 0.0
            eta = None
            if elapsed > 0 and units > 0:
                eta = (total - units) * elapsed / units
            return ProgressSnapshot(
                total=total,
                done=done,
                fraction=units / total if total else 0.0,
                tokens=self._tokens,
                tokens_per_second=rate,
                eta_seconds=eta,
                phase=self.phase,
            )

    @contextmanager
    def listening(
        self, listener: Callable[[ProgressSnapshot], None], every: float
    ) -> Iterator[None]:
        """Call `listener` with a snapshot at most every `every` seconds while inside."""
        last = [float("-inf")]

        def throttled(snapshot: ProgressSnapshot) -> None:
            now = time.monotonic()
            if now - last[0] >= every:
                last[0] = now
                listener(snapshot)

        self._listeners.append(throttled)
        try:
            yield
        finally:
            self._listeners.remove(throttled)

    def _notify(self) -> None:
        if self._listeners:
            snapshot = self.snapshot()
            for listener in list(self._listeners):
                try:
                    listener(snapshot)
                except Exception as exc:  # a display must never stop the work it shows
                    if not self._listener_failed:
                        _log.warning("progress display failed, the run goes on: %s", exc)
                    self._listener_failed = True


_runs: dict[int, RunProgress] = {}
_runs_lock = threading.Lock()


def progress_for(job_id: int) -> RunProgress:
    """The tracker of job `job_id` in this process, made on first use."""
    with _runs_lock:
        return _runs.setdefault(job_id, RunProgress())


def forget_progress(job_id: int) -> None:
    """Drop a finished run's tracker."""
    with _runs_lock:
        _runs.pop(job_id, None)
