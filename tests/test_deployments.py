"""Deployments for real: `articlegen serve` against a local Prefect server, and a run of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select

from articlegen.cli import cli
from articlegen.db import Article, Database, Prompt, PromptStatus
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.db.registry import find_model
from articlegen.flows.import_prompts import import_prompts
from articlegen.runs import close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

GOOD = "external_id,topic,variants\ns1,Night trains,2\ns2,Sourdough,1\ns3,Heat pumps,1\n"


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).parent / "articlegen"
    return subprocess.Popen(
        [str(script), "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop(server: subprocess.Popen[str]) -> str:
    """Stop `serve` as a service manager would; its output, once it exited cleanly."""
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
    output = server.stdout.read() if server.stdout else ""
    if server.stdout:
        server.stdout.close()
    assert code == 0, output
    return output


def _wait_for_deployments(names: set[str], seconds: float = 90) -> dict[str, Any]:
    """The deployments called `names` ("flow/deployment"), once the server has them all."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            by_name = {
                f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()
            }
        if names <= set(by_name):
            return by_name
        time.sleep(1)
    raise AssertionError(f"deployments {names} never appeared")


def _logs(flow_run_id: UUID, awaited: str, seconds: float = 30) -> str:
    """The flow run's log lines, once one holding `awaited` has arrived."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            found = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        text = "\n".join(log.message for log in found)
        if awaited in text:
            return text
        time.sleep(1)
    return text


def test_serve_registers_the_deployments_and_runs_them(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    source = tmp_path / "p.csv"
    source.write_text(GOOD, encoding="utf-8")
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
        "ARTICLEGEN_SCHEDULE": "*/30 * * * *",
        "ARTICLEGEN_MODELS_DIR": str(tmp_path / "models"),
        # The runs' logs go to the server, where the test reads what a user would see there.
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
    }
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Report {i}: the line ran {i} trains." for i in range(12)))
    assert CliRunner().invoke(cli, ["import", str(source)], env=env).exit_code == 0
    server = _serve(env)
    try:
        deployments = _wait_for_deployments(
            {
                "generate-articles/articlegen",
                "import-prompts/articlegen",
                "fine-tune-model/articlegen",
            }
        )
        generate = deployments["generate-articles/articlegen"]
        schedules = [s.schedule.cron for s in generate.schedules]
        assert schedules == ["*/30 * * * *"]

        run = run_deployment(
            "generate-articles/articlegen",
            parameters={
                "params": {"limit": 2, "batch_size": 2, "overrides": {"max_new_tokens": 10}}
            },
            timeout=240,
        )
        assert isinstance(run, FlowRun)  # the sync API, from sync code
        assert run.state is not None
        assert run.state.is_completed(), run.state

        # The fine-tuning flow, started as the UI starts it: parameters as JSON.
        trained = run_deployment(
            "fine-tune-model/articlegen",
            parameters={
                "params": {
                    "name": "served",
                    "base": str(tiny_model_dir),
                    "corpus": [str(corpus)],
                    "epochs": 1,
                    "grad_accum": 1,
                    "batch_size": 4,
                    "block_size": 16,
                    "memorisation_samples": 0,
                }
            },
            timeout=240,
        )
        assert isinstance(trained, FlowRun)
        assert trained.state is not None
        assert trained.state.is_completed(), trained.state

        # A run with a failed prompt (too long for the model) ends CompletedWithErrors.
        long = tmp_path / "long.csv"
        long.write_text(f"external_id,topic,tags,prompt\nlong,Too long,long,{'word ' * 600}\n")
        assert CliRunner().invoke(cli, ["import", str(long)], env=env).exit_code == 0
        partial = run_deployment(
            "generate-articles/articlegen", parameters={"tags": ["long"]}, timeout=240
        )
        assert isinstance(partial, FlowRun)
        assert partial.state is not None
        assert (partial.state.type, partial.state.name) == (
            StateType.FAILED,
            "CompletedWithErrors",
        )
        # Prefect logs every failed run's final exception; ours is a sentence, not a TypeError
        # about a result it could not read.
        logs = _logs(partial.id, "PromptsFailed")
        assert (
            "PromptsFailed: 1 of 1 articles failed, 0 written: see the job-2-summary artifact"
            in logs
        )
        assert "Unexpected result for failed state" not in logs
    finally:
        output = _stop(server)
    assert (
        "Serving generate-articles (cron '*/30 * * * *'), import-prompts and fine-tune-model"
        in output
    )
    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        statuses = {p.external_id: p.status for p in session.scalars(select(Prompt))}
        articles = session.scalars(select(Article)).all()
        served = find_model(session, "served")
        assert served is not None
        assert (served.status, served.kind) == (ModelStatus.READY, ModelKind.FINE_TUNED)
        assert [e["epoch"] for e in served.epochs] == [0, 1]
    db.close()
    assert (tmp_path / "models" / "served" / "model" / "model.safetensors").is_file()
    # limit 2, highest priority then oldest: s1 (2 variants) and s2; then the long one, alone.
    assert statuses == {
        "s1": PromptStatus.DONE,
        "s2": PromptStatus.DONE,
        "s3": PromptStatus.PENDING,
        "long": PromptStatus.FAILED,
    }
    assert len(articles) == 3
    assert {a.tokens_generated for a in articles} <= set(range(1, 11))


def test_import_flow_drains_a_drop_folder(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", sqlite_url)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(GOOD, encoding="utf-8")
    (drop / "b.csv").write_text("topic,top_p\nBad,1.5\n", encoding="utf-8")
    results = import_prompts(str(drop))
    close_contexts()
    assert results[0] == {
        "file": "a.csv",
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    assert results[1]["file"] == "b.csv"
    assert "line 2: `top_p`: input should be less than or equal to 1" in results[1]["error"]
    assert sorted(p.name for p in drop.rglob("*") if p.is_file()) == [
        "a.csv", "b.csv", "b.csv.error.txt"
    ]  # fmt: skip
    assert (drop / "imported" / "a.csv").exists()
    assert (drop / "rejected" / "b.csv").exists()
    assert import_prompts(str(drop)) == []  # drained: nothing left to import
    close_contexts()
