"""The benchmark's parts: its workload, two measured systems on a tiny model, and its verdicts.

Nothing here is timed against a threshold: the tests check that the benchmark counts the work
right and judges its numbers right.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from articlegen.generator.loading import LoadedModel
from bench.continuous import _engine, round_ratios, rounds
from bench.report import Target, markdown, summarise, targets, write_results
from bench.systems import run_baseline, run_engine
from bench.workload import LENGTHS, make_workload


def test_the_workload_is_fixed_work_of_mixed_length() -> None:
    workload = make_workload(22, 128)
    assert len(workload.prompts) == 22
    assert [len(p.split()) for p in workload.prompts[: len(LENGTHS)]] == list(LENGTHS)
    assert workload.tokens == 22 * 128
    config = workload.config()
    assert (config.min_new_tokens, config.max_new_tokens) == (128, 128)
    assert config.top_p == 0.95  # the nucleus preset
    assert make_workload(22, 128) == workload  # the same every run


@pytest.mark.parametrize("continuous", [True, False])
def test_the_continuous_benchmark_counts_rows_per_step(
    tiny_model: LoadedModel, continuous: bool
) -> None:
    # Two rows, articles of 2 and 8 tokens: 8 steps, 10 tokens, 1.25 rows per step in either
    # engine (the batch loop's short row idles; the queue has no prompt to refill it with).
    rate, rows = _engine(tiny_model, ["Tea", "Bread"], [2, 8], 2, continuous, 10_000)
    assert rate > 0
    assert rows == 10 / 8
    # Four articles of 3 tokens over two rows: every step has both rows busy.
    _, full = _engine(tiny_model, ["a", "b", "c", "d"], [3] * 4, 2, continuous, 10_000)
    assert full == 2.0


def test_the_continuous_benchmark_interleaves_its_rounds() -> None:
    # Each round starts one system later, so a slow spell falls on every system alike; every
    # system's measurements come back in round order.
    calls: list[str] = []

    def system(name: str, rate: float) -> Callable[[], tuple[float, float]]:
        def measure() -> tuple[float, float]:
            calls.append(name)
            return rate + len(calls), 2.0

        return measure

    got = rounds({"a": system("a", 10.0), "b": system("b", 20.0), "c": system("c", 30.0)}, 4)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert got == {
        "a": [(11.0, 2.0), (16.0, 2.0), (18.0, 2.0), (20.0, 2.0)],
        "b": [(22.0, 2.0), (24.0, 2.0), (29.0, 2.0), (31.0, 2.0)],
        "c": [(33.0, 2.0), (35.0, 2.0), (37.0, 2.0), (42.0, 2.0)],
    }


def test_the_continuous_benchmark_pairs_the_runs_of_each_round() -> None:
    # Round 2 ran slow for both systems. Paired round by round, mixed is 0.9 of fixed in two
    # rounds of three (the verdict's median); the medians of each, 120 over 160, say 0.75.
    measured = {
        "mixed": [(180.0, 20.0), (90.0, 20.0), (120.0, 20.0)],
        "fixed": [(200.0, 27.0), (100.0, 27.0), (160.0, 27.0)],
    }
    assert round_ratios(measured, "mixed", "fixed") == pytest.approx([0.9, 0.9, 0.75])
    assert round_ratios(measured, "fixed", "mixed") == pytest.approx([10 / 9, 10 / 9, 4 / 3])


def test_baseline_and_engine_generate_the_whole_workload(tiny_model_dir: Path) -> None:
    workload = make_workload(6, 12)
    baseline = run_baseline(str(tiny_model_dir), workload, "cpu")
    engine = run_engine(str(tiny_model_dir), workload, "cpu", "float32", batch_size=4)
    for measurement in (baseline, engine):
        assert measurement.articles == 6
        assert measurement.tokens == 6 * 12  # min = max: nobody stops early
        assert measurement.seconds > 0
        assert measurement.tokens_per_s == measurement.tokens / measurement.seconds
        assert measurement.peak_rss_mb > 0
    assert (baseline.batch_size, engine.batch_size) == (1, 4)


def _run(label: str, rate: float, rss: float = 1000.0, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "system": label.split("@")[0],
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 1 if label == "baseline" else 32,
        "articles": 64,
        "tokens": 8192,
        "seconds": 8192 / rate,
        "tokens_per_s": rate,
        "articles_per_min": 60 * 64 * rate / 8192,
        "peak_rss_mb": rss,
        "stages": extra.get("stages", {}),
    }


def test_medians_ratios_and_verdicts() -> None:
    runs = [
        _run("baseline", 30),
        _run("baseline", 20),
        _run("baseline", 40, rss=3000),  # not articlegen's memory: not judged
        _run("engine", 160),
        _run("engine", 100),
        _run("engine", 170, rss=2100),
        _run("flow", 140, stages={"generation": 50.0, "orchestration": 2.0}),
        _run("flow", 150, stages={"generation": 48.0, "orchestration": 4.0}),
        _run("flow", 120, stages={"generation": 60.0, "orchestration": 3.0}),
    ]
    summary = summarise(runs)
    assert summary["baseline"]["tokens_per_s"] == 30  # medians, not means
    assert summary["engine"]["tokens_per_s"] == 160
    assert summary["flow"]["stages"] == {"generation": 50.0, "orchestration": 3.0}
    assert summary["engine"]["peak_rss_mb"] == 2100  # the worst run counts
    scaling = [
        {"prompts": 100, "overhead_ms_per_prompt": 10.0},
        {"prompts": 1000, "overhead_ms_per_prompt": 13.0},
    ]
    verdicts = {t.name: (t.value, t.verdict) for t in targets(summary, scaling)}
    assert verdicts == {
        "engine / baseline tokens/s": (pytest.approx(160 / 30), "PASS"),
        "engine / baseline (stretch)": (pytest.approx(160 / 30), "FAIL"),
        "flow / engine tokens/s": (pytest.approx(140 / 160), "PASS"),
        "peak resident memory, MiB": (2100, "FAIL"),
        "overhead per prompt, 1000 / 100": (pytest.approx(1.3), "FAIL"),
    }


def test_a_part_not_measured_is_not_a_pass() -> None:
    summary = summarise([_run("engine", 100), _run("flow", 90)])
    (ratio, *_) = targets(summary, [])
    assert ratio.value is None
    assert ratio.verdict == "n/a"
    assert Target("x", 1.0, 1.0).verdict == "PASS"
    assert Target("x", 1.1, 1.0, higher_is_better=False).verdict == "FAIL"


def test_results_are_written_as_json_markdown_and_png(tmp_path: Path) -> None:
    runs = [_run("baseline", 30), _run("engine", 160), _run("flow", 150)]
    summary = summarise(runs)
    result = {
        "command": "python -m bench",
        "environment": {
            "date": "2026-11-26 12:00 UTC",
            "machine": "test CPU",
            "torch": "2",
            "transformers": "5",
            "threads": 2,
        },
        "workload": {"prompts": 64, "new_tokens": 128, "preset": "nucleus"},
        "repeats": 1,
        "systems": summary,
        "targets": [
            {**t.__dict__, "passed": t.passed, "verdict": t.verdict} for t in targets(summary, [])
        ],
        "sweep": [_run("engine@4", 60) | {"batch_size": 4}],
        "scaling": [],
        "runs": runs,
    }
    json_path, md_path, png_path = write_results(result, tmp_path, "run")
    assert json_path.read_text().startswith("{")
    text = md_path.read_text()
    assert text == markdown(result)
    assert "| engine / baseline tokens/s | 5.33 | ≥ 5.0 | **PASS** |" in text
    assert "| baseline | 1 | float32 | cpu | 30.0 |" in text
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_training_benchmark_measures_both_systems_on_the_same_tokens(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from bench.training import _articlegen, _corpus, _plain_loop

    corpus = _corpus(tmp_path / "corpus.txt", 12)
    options = {
        "block_size": 32, "batch_size": 4, "grad_accum": 2, "epochs": 1, "lr": 5e-5,
        "seed": 42, "device": "cpu",
    }  # fmt: skip
    baseline = _plain_loop(str(tiny_model_dir), corpus, options)
    ours = _articlegen(str(tiny_model_dir), corpus, options, 0)
    assert baseline["tokens"] == ours["tokens"] > 0  # the same blocks, trained once each
    for figures in (baseline, ours):
        assert figures["tokens_per_s"] == pytest.approx(figures["tokens"] / figures["seconds"])
    assert ours["wall_seconds"] >= ours["seconds"]
