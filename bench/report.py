"""Turning measurements into the benchmark's verdict: medians, ratios, targets, and the JSON,
Markdown and PNG files under bench/results/."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from articlegen.runs.reports import FINISHING_STAGES

__all__ = ["Target", "summarise", "targets", "write_results"]

# The targets. Each compares two numbers measured in the same run.
ENGINE_OVER_BASELINE = 5.0
ENGINE_OVER_BASELINE_STRETCH = 8.0
FLOW_OVER_ENGINE = 0.85
PEAK_RSS_MB = 2048.0
OVERHEAD_GROWTH = 1.2


@dataclass(frozen=True)
class Target:
    """One target: the measured value against its threshold."""

    name: str
    value: float | None
    threshold: float
    higher_is_better: bool = True

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        if self.higher_is_better:
            return self.value >= self.threshold
        return self.value <= self.threshold

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def _median(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median figures per system (keyed `system` or `system@dtype` for extra precisions)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    summary = {}
    for label, members in groups.items():
        stages = {
            stage: statistics.median(m["stages"].get(stage, 0.0) for m in members)
            for stage in members[0]["stages"]
        }
        summary[label] = {
            "system": members[0]["system"],
            "dtype": members[0]["dtype"],
            "device": members[0]["device"],
            "batch_size": members[0]["batch_size"],
            "runs": len(members),
            "tokens": members[0]["tokens"],
            "articles": members[0]["articles"],
            "tokens_per_s": _median(members, "tokens_per_s"),
            "tokens_per_s_all": [round(m["tokens_per_s"], 2) for m in members],
            "articles_per_min": _median(members, "articles_per_min"),
            "seconds": _median(members, "seconds"),
            "peak_rss_mb": max(m["peak_rss_mb"] for m in members),
            "stages": stages,
        }
    return summary


def targets(summary: dict[str, dict[str, Any]], scaling: Sequence[dict[str, Any]]) -> list[Target]:
    """The issue's targets against this run's numbers (n/a where a part was not measured)."""

    def rate(label: str) -> float | None:
        return summary[label]["tokens_per_s"] if label in summary else None

    baseline, engine, flow = rate("baseline"), rate("engine"), rate("flow")
    engine_ratio = engine / baseline if engine and baseline else None
    # The memory target is articlegen's own; the baseline's peak is reported, not judged.
    peaks = [s["peak_rss_mb"] for k, s in summary.items() if k in ("engine", "flow")]
    overhead = {s["prompts"]: s["overhead_ms_per_prompt"] for s in scaling}
    growth = None
    if overhead.get(100) and 1000 in overhead:
        growth = overhead[1000] / overhead[100]
    return [
        Target("engine / baseline tokens/s", engine_ratio, ENGINE_OVER_BASELINE),
        Target("engine / baseline (stretch)", engine_ratio, ENGINE_OVER_BASELINE_STRETCH),
        Target(
            "flow / engine tokens/s", flow / engine if flow and engine else None, FLOW_OVER_ENGINE
        ),
        Target("peak resident memory, MiB", max(peaks) if peaks else None, PEAK_RSS_MB, False),
        Target("overhead per prompt, 1000 / 100", growth, OVERHEAD_GROWTH, False),
    ]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The run as Markdown tables: systems, targets, flow stages, sweep, scaling."""
    env = result["environment"]
    lines = [
        f"# Throughput benchmark, {env['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"Machine: {env['machine']}; torch {env['torch']}, transformers {env['transformers']}, "
        f"{env['threads']} threads. Workload: {result['workload']['prompts']} prompts of mixed "
        f"length, {result['workload']['new_tokens']} new tokens each (min = max), preset "
        f"`{result['workload']['preset']}`; medians of {result['repeats']} interleaved runs.",
        "",
        "| system | batch | dtype | device | tokens/s | articles/min | seconds | peak RSS MiB |"
        " runs (tokens/s) |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, s in result["systems"].items():
        lines.append(
            f"| {label} | {s['batch_size']} | {s['dtype']} | {s['device']} | "
            f"{_fmt(s['tokens_per_s'], 1)} | {_fmt(s['articles_per_min'], 1)} | "
            f"{_fmt(s['seconds'], 1)} | {_fmt(s['peak_rss_mb'], 0)} | "
            f"{', '.join(f'{v:.1f}' for v in s['tokens_per_s_all'])} |"
        )
    lines += ["", "| target | measured | threshold | verdict |", "| --- | ---: | ---: | --- |"]
    for t in result["targets"]:
        sign = "≥" if t["higher_is_better"] else "≤"
        lines.append(
            f"| {t['name']} | {_fmt(t['value'])} | {sign} {t['threshold']} | **{t['verdict']}** |"
        )
    flow = result["systems"].get("flow")
    if flow and flow["stages"]:
        # The finishing stages run beside generation: the others add up to the flow's time.
        stages = flow["stages"]
        total = sum(v for k, v in stages.items() if k not in FINISHING_STAGES) or 1.0
        lines += [
            "",
            "Where the flow's time goes (median seconds; post-processing, rendering and "
            "write-back run beside generation, `waiting` is the flow waiting for them):",
            "",
            "| stage | seconds | share |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {k} | {v:.2f} | {v / total:.1%} |" for k, v in flow["stages"].items()]
    if result["sweep"]:
        lines += [
            "",
            "Engine throughput against batch size (one run each):",
            "",
            "| batch | prompts | tokens/s | peak RSS MiB |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {s['batch_size']} | {s['articles']} | {s['tokens_per_s']:.1f} | "
            f"{s['peak_rss_mb']:.0f} |"
            for s in result["sweep"]
        ]
    if result["scaling"]:
        lines += [
            "",
            "Orchestration overhead (flow time outside generation, tiny model):",
            "",
            "| prompts | flow seconds | generation seconds | overhead ms/prompt |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {s['prompts']} | {s['seconds']:.2f} | {s['generation_seconds']:.2f} | "
            f"{s['overhead_ms_per_prompt']:.1f} |"
            for s in result["scaling"]
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Throughput against batch size: the engine's sweep, the baseline, the flow."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sweep = result["sweep"]
    if sweep:
        ax.plot(
            [s["batch_size"] for s in sweep],
            [s["tokens_per_s"] for s in sweep],
            marker="o",
            label="engine",
        )
    systems = result["systems"]
    if "baseline" in systems:
        ax.axhline(
            systems["baseline"]["tokens_per_s"],
            color="grey",
            linestyle="--",
            label="baseline: generate, one prompt at a time",
        )
    for label, s in systems.items():
        if label != "baseline":
            ax.scatter(
                [s["batch_size"]],
                [s["tokens_per_s"]],
                zorder=3,
                marker="s" if s["system"] == "flow" else "^",
                label=f"{label} (median)",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("generated tokens per second")
    env = result["environment"]
    ax.set_title(f"{env['machine']}, {result['workload']['new_tokens']} new tokens")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(result: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png` in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.md", folder / f"{stem}.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(result), encoding="utf-8")
    plot(result, paths[2])
    return paths
