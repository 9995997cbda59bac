"""The Prefect flows, run for real under Prefect's test harness (a local temporary server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import select

from articlegen.core.errors import ConfigError, DatabaseError, ModelError
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.flows.generate import generate_articles
from articlegen.generator import PresetCatalog
from articlegen.importing import import_prompts_csv
from articlegen.runs import GenerateParams, close_contexts

from .test_runner import PROMPTS_CSV


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}  # ~1 s saved per flow run
        ),
    ):
        yield


@pytest.fixture
def flow_env(
    prefect_server: None,
    sqlite_url: str,
    tiny_model_dir: Path,
    catalog: PresetCatalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    """A SQLite database with the 12 test prompts, and the settings a flow reads."""
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ARTICLEGEN_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("ARTICLEGEN_DEVICE", "cpu")
    path = tmp_path / "prompts.csv"
    path.write_text(PROMPTS_CSV.replace("{long}", "word " * 600), encoding="utf-8")
    db = Database.open(sqlite_url)
    import_prompts_csv(db, path, catalog)
    yield db
    db.close()
    close_contexts()


def _artifact_keys(job_id: int) -> set[str]:
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts() if a.key}
    return {k for k in keys if k.startswith(f"job-{job_id}-")}


def test_generate_articles_flow(flow_env: Database) -> None:
    result = generate_articles(GenerateParams(batch_size=4, overrides={"max_new_tokens": 24}))
    assert result.status == JobStatus.COMPLETED_WITH_ERRORS.value
    assert (result.total, result.done, result.failed) == (16, 15, 1)
    # Where the time went: every batch stage, and the orchestration around them.
    assert set(result.seconds) == {
        "loading",
        "prompting",
        "generation",
        "post-processing",
        "rendering",
        "write-back",
        "orchestration",
    }
    assert result.seconds["generation"] > 0
    with flow_env.session(write=False) as session:
        job = session.get_one(Job, result.job)
        prompts = list(session.scalars(select(Prompt)))
        articles = list(session.scalars(select(Article)))
    assert job.flow_run_id
    assert job.started_at is not None
    assert job.finished_at is not None
    assert len(articles) == 15
    assert sum(p.status is PromptStatus.DONE for p in prompts) == 11
    failed = [p for p in prompts if p.status is PromptStatus.FAILED]
    assert [p.external_id for p in failed] == ["p12"]
    assert _artifact_keys(job.id) == {
        f"job-{job.id}-progress",
        f"job-{job.id}-summary",
        f"job-{job.id}-articles",
    }
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(job.flow_run_id)  # type: ignore[arg-type]
    assert run.name == f"generate-articles-job-{job.id}"

    again = generate_articles(GenerateParams(batch_size=4))
    assert (again.total, again.done, again.status) == (0, 0, "completed")


def test_dry_run_flow_claims_nothing(flow_env: Database) -> None:
    result = generate_articles(GenerateParams(limit=2, dry_run=True))
    assert (result.dry_run, result.prompts, result.total) == (True, 2, 3)
    with flow_env.session(write=False) as session:
        assert {p.status for p in session.scalars(select(Prompt))} == {PromptStatus.PENDING}
        assert session.scalars(select(Article)).all() == []


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConfigError("`top_p` must be at most 1"), False),  # the user's to fix: fail at once
        (ModelError("cannot load model 'gpt2'"), False),
        (DatabaseError("database is locked"), True),  # transient: try again
        (ConnectionError("reset by peer"), True),
    ],
)
def test_retries_are_for_transient_failures_only(error: Exception, retried: bool) -> None:
    from prefect.states import Failed

    from articlegen.flows.generate import _transient

    assert _transient(None, None, Failed(data=error)) is retried


def test_a_failed_run_releases_its_prompts(flow_env: Database) -> None:
    from articlegen.core.errors import ModelError

    with pytest.raises(ModelError, match="model directory /nonexistent/model does not exist"):
        generate_articles(GenerateParams(model="/nonexistent/model", limit=4, batch_size=2))
    with flow_env.session(write=False) as session:
        job = session.scalars(select(Job)).one()
        statuses = {p.status for p in session.scalars(select(Prompt))}
        attempts = sorted(p.attempts for p in session.scalars(select(Prompt)))
    assert job.status is JobStatus.FAILED
    assert (job.error or "").startswith("ModelError: model directory /nonexistent/model")
    assert statuses == {PromptStatus.PENDING}  # nothing stuck in `claimed`
    assert attempts == [0] * 8 + [1] * 4  # the attempt is counted


def test_a_dry_run_job_is_finished(flow_env: Database) -> None:
    result = generate_articles(GenerateParams(dry_run=True))
    with flow_env.session(write=False) as session:
        job = session.get_one(Job, result.job)
    assert job.status is JobStatus.COMPLETED
    assert job.parameters["dry_run"] is True


def test_ctrl_c_cancels_the_run_and_releases_its_prompts(
    prefect_server: None, flow_env: Database, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """SIGINT to a real `articlegen generate` while it writes batches."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    script = Path(sys.executable).parent / "articlegen"
    # A terminal delivers Ctrl-C to a process whose SIGINT is at its default; a background job
    # (CI may run as one) inherits it ignored, and Python would never see the interrupt.
    run = subprocess.Popen(
        [str(script), "generate", "--batch-size", "1", "--max-new-tokens", "400"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the first batch is written
            with flow_env.session(write=False) as session:
                if session.scalars(select(Article)).first() is not None:
                    break
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode != 0, output
    with flow_env.session(write=False) as session:
        job = session.scalars(select(Job)).one()
        statuses = [p.status for p in session.scalars(select(Prompt))]
        articles = len(session.scalars(select(Article)).all())
    assert job.status is JobStatus.CANCELLED, (job.status, output)
    assert PromptStatus.CLAIMED not in statuses  # nothing stuck
    assert 1 <= articles < 16
    assert statuses.count(PromptStatus.DONE) >= 1  # what was written stays written
