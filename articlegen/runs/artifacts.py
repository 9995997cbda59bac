"""The text of a run's Prefect artifacts: the dry-run plan, the end-of-run summary, and a row
of the articles table per article written.

Numbers are rounded to what a person reads (perplexity 342.2, not 342.1759199907448); an article
links to its page in the review workspace when ARTICLEGEN_WEB_URL says where that is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from articlegen.db.models import Article, ModelKind
from articlegen.runs.params import GenerateParams
from articlegen.runs.plan import RunPlan
from articlegen.runs.reports import FINISHING_STAGES, BatchReport, RunResult

__all__ = [
    "ARTICLES_DESCRIPTION",
    "PLAN_DESCRIPTION",
    "SUMMARY_DESCRIPTION",
    "article_link",
    "article_row",
    "plan_markdown",
    "summary_markdown",
]

SUMMARY_DESCRIPTION = "How the run ended: model, parameters, counts, time per stage, failures."
ARTICLES_DESCRIPTION = "Every article the run wrote: title, size, quality measures, an excerpt."
PLAN_DESCRIPTION = "What the dry run would claim and write; it claimed nothing."
RANDOM_WEIGHTS = "this model has random weights (`articlegen models init`), never trained"
# Enough of an article's opening to tell two apart in a table.
EXCERPT_CHARS = 120


def article_link(article_id: int, web_url: str | None) -> str:
    """Where to review an article: its page in the workspace, else the command that shows it."""
    if web_url:
        return f"{web_url.rstrip('/')}/articles/{article_id}"
    return f"articlegen articles show {article_id}"


def _text(value: str) -> str:
    """Model or user text as literal markdown: no markup, links or HTML of its own."""
    flat = " ".join(value.split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]()#|!~])", r"\\\1", flat)


def _excerpt(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1].rstrip() + "…"


def article_row(article: Article, web_url: str | None) -> dict[str, Any]:
    """The articles table's row for one written article."""
    perplexity = article.metrics.get("perplexity")
    return {
        "article": article.id,
        "prompt": article.prompt_id,
        "variant": article.variant,
        "title": article.title,
        "words": article.metrics.get("word_count"),
        "perplexity": round(perplexity, 1) if isinstance(perplexity, float) else perplexity,
        "flags": ", ".join(article.metrics.get("flags", [])),
        "excerpt": _excerpt(article.body),
        "model_kind": article.model_kind,
        "review": article_link(article.id, web_url),
    }


def plan_markdown(job_id: int, plan: RunPlan) -> str:
    """The dry-run report."""
    return (
        f"# Job {job_id}: dry run\n\n{plan.prompts} pending prompts would become "
        f"{plan.articles} articles in {len(plan.batches)} batches. Nothing was claimed."
    )


def _settings_line(params: GenerateParams) -> str:
    # Only what this run set: the defaults would bury it.
    chosen = params.model_dump(mode="json", exclude_defaults=True, exclude={"model", "preset"})
    # Escaped, not a code span: a tag or model name could close a span and start markup.
    return _text(json.dumps(chosen, sort_keys=True)) if chosen else "the defaults"


def summary_markdown(
    result: RunResult,
    reports: Sequence[BatchReport],
    params: GenerateParams,
    web_url: str | None = None,
) -> str:
    """The end-of-run summary: the model and parameters, counts, where the time went, what
    failed or was lost, and where to review the articles."""
    revision = f" at {_text(result.model_revision[:19])}" if result.model_revision else ""
    model = result.model or params.model or "the configured model"
    preset = f"{params.preset or 'nucleus'} for prompts naming none (a prompt's own wins)"
    lines = [
        f"# Job {result.job}: {result.status}",
        "",
        f"{result.done} of {result.total} articles written, {result.failed} failed.",
        "",
        f"- **Model:** {_text(model)}{revision}",
        f"- **Preset:** {_text(preset)}",
        f"- **Parameters:** {_settings_line(params)}",
    ]
    written = [row for report in reports for row in report.written]
    if any(row["model_kind"] == ModelKind.RANDOM for row in written):
        lines += ["", f"**WARNING: {RANDOM_WEIGHTS}.** Its articles are noise, not articles."]
    if result.seconds:
        # The finishing stages ran beside generation: the others add up to the run's time.
        wall = sum(v for k, v in result.seconds.items() if k not in FINISHING_STAGES) or 1.0
        lines += ["", "| stage | seconds | share |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {v:.1f} | {v / wall:.0%} |" for k, v in result.seconds.items()]
        if any(k in FINISHING_STAGES for k in result.seconds):
            lines += [
                "",
                "Post-processing, rendering and write-back ran beside the next batch's "
                "generation; `waiting` is how long the run waited for them. Shares are of the "
                "run's time.",
            ]
    if result.warnings:
        lines += ["", "## Decoding warnings", ""]
        lines += [f"- {_text(warning)}" for warning in result.warnings]
    failures = [f for report in reports for f in report.failures]
    if failures:
        lines += ["", "## Failed prompts", ""]
        lines += [f"- prompt {f.prompt_id}: {_text(f.reason)}" for f in failures]
    lost = [p for report in reports for p in report.lost]
    if lost:
        lines += [
            "",
            "## Taken over by another run",
            "",
            f"This run's lease on prompts {', '.join(map(str, lost))} ran out before it could "
            "write them, and another run claimed them; it wrote nothing for them.",
        ]
    if written and web_url:
        lines += ["", "## Articles", ""]
        lines += [f"- [{_text(row['title'] or 'untitled')}]({row['review']})" for row in written]
    lines += ["", f"Review with `articlegen articles list --job {result.job}`."]
    return "\n".join(lines)
