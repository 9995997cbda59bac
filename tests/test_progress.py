"""Progress a person can read: article by article inside a batch, on a real terminal."""

from __future__ import annotations

import os
import pickle
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner
from prefect.settings import PREFECT_API_URL

from articlegen.cli import cli
from articlegen.core.errors import PromptsFailed
from articlegen.generator import init_model
from articlegen.generator.requests import DecodeStep
from articlegen.runs import RunProgress, RunResult, close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_run_counts_articles_as_rows_finish_and_settles_each_batch() -> None:
    progress = RunProgress()
    assert progress.snapshot().line() == "0/0 articles · 0 tokens/s"
    assert progress.snapshot().eta_seconds is None  # nothing to extrapolate from yet
    progress.plan(4)
    progress.step(DecodeStep(tokens=3, finished=1, running_fraction=0.5))
    time.sleep(0.01)
    now = progress.snapshot()
    assert (now.done, now.total, now.tokens) == (1, 4, 3)
    assert now.fraction == pytest.approx(1.5 / 4)
    assert now.eta_seconds is not None
    assert now.eta_seconds > 0
    # The batch's own count replaces the rows heard: it includes an article that failed
    # before generating, which no decoding step reported.
    progress.batch_done(4)
    done = progress.snapshot()
    assert (done.done, done.fraction, done.eta_seconds) == (4, 1.0, 0.0)
    assert done.line().startswith("4/4 articles · ")
    assert done.line().endswith(" tokens/s · ETA 0:00")


def test_listeners_hear_at_most_once_per_interval() -> None:
    progress = RunProgress()
    progress.plan(2)
    heard: list[int] = []
    with progress.listening(lambda s: heard.append(s.tokens), every=3600):
        progress.step(DecodeStep(tokens=2, finished=0, running_fraction=0.2))
        progress.step(DecodeStep(tokens=2, finished=0, running_fraction=0.4))
    progress.step(DecodeStep(tokens=2, finished=0, running_fraction=0.6))
    assert heard == [2]  # the first, then throttled; none after the block


@pytest.fixture(scope="module")
def mini_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer model: slow enough per step that rows finishing apart are seen apart."""
    path = tmp_path_factory.mktemp("models") / "mini"
    init_model(path, size="mini", seed=0)
    return path


def _read_all(fd: int, process: subprocess.Popen[bytes], seconds: float) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_the_terminal_bar_counts_articles_one_by_one_within_a_batch(
    prefect_server: None,  # noqa: F811
    mini_model_dir: Path,
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    # One batch of four greedy articles of very different lengths: they finish far apart, and
    # a bar that moved once per batch would show only 0/4 and 4/4.
    source = tmp_path / "p.csv"
    source.write_text(
        "topic,preset,max_new_tokens\nA,greedy,20\nB,greedy,90\nC,greedy,160\nD,greedy,200\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(mini_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    imported = CliRunner().invoke(cli, ["import", str(source)], env=env)
    assert imported.exit_code == 0, imported.output
    close_contexts()
    main, terminal = pty.openpty()
    script = Path(sys.executable).parent / "articlegen"
    process = subprocess.Popen(
        [str(script), "generate", "--batch-size", "4"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=tmp_path,
    )
    os.close(terminal)
    try:
        output = _read_all(main, process, seconds=240)
    finally:
        os.close(main)
        code = process.wait(timeout=60)
    text = ANSI.sub("", output).replace("\r", "\n")
    assert code == 0, text
    counts = [int(n) for n in re.findall(r"(\d+)/4 articles", text)]
    shown = list(dict.fromkeys(counts))  # in the order first drawn
    assert shown == sorted(shown), shown  # never backwards
    assert shown[-1] == 4
    # Moved inside the one batch. The bar is redrawn five times a second, and once the first
    # rows have left the batch the last ones decode fast: two finishes can share one redraw.
    assert {n for n in shown if 0 < n < 4}, shown
    assert re.search(r"\d+/4 articles · [\d,]+ tokens/s · ETA \d+:\d\d", text)
    assert "Loading model " in text
    assert "Job 1 completed: 4 of 4 articles written, 0 failed" in text


def test_in_a_log_the_waits_are_named_once(
    tiny_model_dir: Path,
    sqlite_url: str,
    tmp_path: Path,
    prefect_server: None,  # noqa: F811
) -> None:
    source = tmp_path / "p.csv"
    source.write_text("topic,max_new_tokens\nA,4\nB,4\n", encoding="utf-8")
    env = {
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
        "ARTICLEGEN_CACHE_DIR": str(tmp_path / "cache"),  # no batch size measured yet
    }
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(source)], env=env).exit_code == 0
    first = runner.invoke(cli, ["generate", "--limit", "1"], env=env, catch_exceptions=False)
    close_contexts()
    assert first.exit_code == 0, first.output
    assert "Loading model" not in first.stderr  # quick: a log does not need to be told
    assert (
        f"Measuring the best batch size for {tiny_model_dir} on cpu (once per model and "
        "machine, then cached)…" in first.stderr
    )
    assert "1/1 articles · " in first.stderr  # the bar's last state, printed once
    second = runner.invoke(cli, ["generate"], env=env, catch_exceptions=False)
    close_contexts()
    assert second.exit_code == 0, second.output
    assert "Measuring" not in second.stderr  # measured once, then read from the cache


def test_a_failing_display_never_stops_the_run() -> None:
    progress = RunProgress()
    progress.plan(1)

    def broken(_: object) -> None:
        raise ConnectionError("the Prefect server went away")

    with progress.listening(broken, every=0):
        progress.step(DecodeStep(tokens=1, finished=0, running_fraction=0.5))
        progress.step(DecodeStep(tokens=1, finished=1, running_fraction=0.0))
    assert progress.snapshot().done == 1


def test_the_outcome_of_a_run_with_failed_prompts_survives_a_round_trip() -> None:
    result = RunResult(job=3, status="completed_with_errors", total=4, done=3, failed=1)
    outcome = PromptsFailed("1 of 4 articles failed", result)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        again = loads(dumps(outcome))
        assert (str(again), again.result) == ("1 of 4 articles failed", result)


def test_a_run_that_wrote_nothing_and_failed_exits_1(
    tiny_model_dir: Path,
    sqlite_url: str,
    tmp_path: Path,
    prefect_server: None,  # noqa: F811
) -> None:
    source = tmp_path / "long.csv"
    source.write_text(f"topic,prompt,max_new_tokens\nLong,{'word ' * 600},8\n", encoding="utf-8")
    env = {"ARTICLEGEN_DATABASE_URL": sqlite_url, "ARTICLEGEN_MODEL": str(tiny_model_dir)}
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(source)], env=env).exit_code == 0
    result = runner.invoke(cli, ["generate", "--batch-size", "1"], env=env, catch_exceptions=False)
    close_contexts()
    # A script sees the failure: nothing written, the prompt failed (too long for the model).
    assert result.exit_code == 1
    assert "completed_with_errors: 0 of 1 articles written, 1 failed" in result.stdout
