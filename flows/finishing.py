"""The batch finishing beside the next one's generation, as the `generate-articles` flow
follows it: waiting for it, failing the run when it fails for good, logging it."""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from articlegen import runs
from articlegen.runs import BatchReport

__all__ = ["abandon_on_failure", "log_batch", "settled"]


def settled(finishing: PrefectFuture[BatchReport], reports: list[BatchReport]) -> float:
    """Wait for the finishing batch and keep its report (or raise what failed it): seconds."""
    started = time.perf_counter()
    reports.append(finishing.result())
    return time.perf_counter() - started


def abandon_on_failure(job_id: int) -> Callable[[PrefectFuture[BatchReport]], None]:
    """A batch that failed to finish (for good: retries are over) fails the run: the batch
    generating meanwhile stops at its next step rather than when it ends."""

    def heard(future: PrefectFuture[BatchReport]) -> None:
        try:
            future.wait(0)  # done: this reads its final state
            failed = not future.state.is_completed()
        except BaseException:  # its thread died otherwise (a cancel): it failed all the same
            failed = True
        if failed:
            runs.abandon(job_id)

    return heard


def log_batch(reports: list[BatchReport], warnings: list[str]) -> None:
    """Log the last batch finished, and each decoding warning the first time it comes."""
    report = reports[-1]
    get_run_logger().info("%s", report.log_line(len(reports)))
    for warning in report.warnings:
        if warning not in warnings:  # each distinct warning once per run
            warnings.append(warning)
            get_run_logger().warning("decoding: %s", warning)
