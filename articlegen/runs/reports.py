"""What runs report: each batch (`BatchReport`) and the whole run (`RunResult`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from articlegen.db.articles import PromptFailure

__all__ = ["FINISHING_STAGES", "BatchReport", "RunResult", "stage_seconds"]

# The stages of `finish_batch`, which the flow runs beside the next batch's generation.
FINISHING_STAGES = ("post-processing", "rendering", "write-back")


@dataclass
class BatchReport:
    """What one batch wrote: rows for the run's table artifact, its failures, the decoding
    warnings of its prompts, and where its time went (seconds per stage: loading, prompting,
    generation, post-processing, rendering, write-back)."""

    written: list[dict[str, Any]] = field(default_factory=list)
    failures: list[PromptFailure] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # prompts another run took over: not written
    returned: list[int] = field(default_factory=list)  # prompts a cancel cut short: given back
    warnings: list[str] = field(default_factory=list)
    batch_metrics: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tokens: int = 0  # tokens generated for the articles written

    def log_line(self, number: int) -> str:
        """One line for the flow run's log: what the batch wrote, how fast, what failed."""
        generating = self.seconds.get("generation", 0.0)
        rate = f", {self.tokens / generating:,.0f} tokens/s" if generating > 0 else ""
        failed = sum(f.articles for f in self.failures)
        written = len(self.written)
        line = f"batch {number}: {written} article{'' if written == 1 else 's'}"
        line += f" written{rate}"
        line += f", {failed} failed" if failed else ", none failed"
        if self.returned:
            line += f", {len(self.returned)} prompts given back (cancelled)"
        if self.failures:
            line += " (" + "; ".join(f"prompt {f.prompt_id}: {f.reason}" for f in self.failures)
            line += ")"
        return line


@dataclass(frozen=True)
class RunResult:
    """How a `generate-articles` run ended: the flow's return value, and what the CLI shows."""

    job: int
    status: str
    # Articles the run took on: claimed, less a batch claimed ahead that never ran as its own
    # (a failed or cancelled run gives it back). A dry run: that it would write.
    total: int
    done: int = 0
    failed: int = 0
    prompts: int = 0  # their prompts (a dry run: that it would claim)
    dry_run: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # each distinct decoding warning of its prompts, once
    model: str | None = None  # the model's name as articles record it, once it was loaded
    model_revision: str | None = None


def stage_seconds(
    reports: Sequence[BatchReport], wall: float, waited: float = 0.0
) -> dict[str, float]:
    """Where a run's time went: each batch stage summed over its batches; `waiting`, the time
    the run waited for a batch to finish (`waited`); and `orchestration`, everything else
    (claiming, Prefect's task runs, artifacts, opening and closing the job).

    The `FINISHING_STAGES` ran beside the next batch's generation: they count towards the
    run's wall time only through `waiting`, so the stages other than those add up to `wall`.
    """
    total: defaultdict[str, float] = defaultdict(float)
    for report in reports:
        for stage, seconds in report.seconds.items():
            total[stage] += seconds
    total["waiting"] = waited
    serial = sum(v for k, v in total.items() if k not in FINISHING_STAGES)
    return {**total, "orchestration": max(0.0, wall - serial)}
