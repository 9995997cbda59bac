"""The text of a run's Prefect artifacts: the dry-run plan and the end-of-run summary."""

from __future__ import annotations

from collections.abc import Sequence

from articlegen.runs.plan import RunPlan
from articlegen.runs.reports import BatchReport, RunResult

__all__ = ["plan_markdown", "summary_markdown"]


def plan_markdown(job_id: int, plan: RunPlan) -> str:
    """The dry-run report."""
    return (
        f"# Job {job_id}: dry run\n\n{plan.prompts} pending prompts would become "
        f"{plan.articles} articles in {len(plan.batches)} batches. Nothing was claimed."
    )


def summary_markdown(result: RunResult, reports: Sequence[BatchReport]) -> str:
    """The end-of-run summary: counts, where the time went, what failed or was lost."""
    lines = [
        f"# Job {result.job}: {result.status}",
        "",
        f"{result.done} of {result.total} articles written, {result.failed} failed.",
    ]
    if result.seconds:
        wall = sum(result.seconds.values()) or 1.0
        lines += ["", "| stage | seconds | share |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {v:.2f} | {v / wall:.0%} |" for k, v in result.seconds.items()]
    if result.warnings:
        lines += ["", "## Decoding warnings", ""]
        lines += [f"- {warning}" for warning in result.warnings]
    failures = [f for report in reports for f in report.failures]
    if failures:
        lines += ["", "## Failed prompts", ""]
        lines += [f"- prompt {f.prompt_id}: {f.reason}" for f in failures]
    lost = [p for report in reports for p in report.lost]
    if lost:
        lines += [
            "",
            "## Taken over by another run",
            "",
            f"This run's lease on prompts {', '.join(map(str, lost))} ran out before it could "
            "write them, and another run claimed them; it wrote nothing for them.",
        ]
    lines += ["", f"Review with `articlegen articles list --job {result.job}`."]
    return "\n".join(lines)
