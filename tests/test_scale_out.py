"""Scale-out for real: a process work pool, two Prefect workers and PostgreSQL, fed by `fan-out`."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select

from articlegen.db import Database, Job, JobStatus
from articlegen.flows.fan_out import fan_out
from articlegen.flows.generate import generate_articles
from articlegen.runs import GenerateParams, close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .test_reliability import _exactly_once, _seed

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


def _start_worker(pool: str, name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", pool, "--name", name, "--limit", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group: stopping it stops the flow runs it started too.
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    """Stop a worker and everything it started; returns what it printed."""
    try:
        # A worker started without a terminal ignores its first SIGTERM: send two.
        for _ in range(2):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=30)
    return output


def test_fan_out_over_two_workers_writes_every_prompt_once(
    prefect_server: None,  # noqa: F811
    postgres_url: str,
    tiny_model_dir: Path,
) -> None:
    articles = _seed(postgres_url, 40)
    pool = f"articlegen-test-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    source = generate_articles.from_source(str(ROOT), "flows/generate.py:generate_articles")
    assert not inspect.isawaitable(source)  # the sync API, from sync code
    source.deploy(name=pool, work_pool_name=pool, build=False, push=False, print_next_steps=False)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        # The workers' INFO lines ("submitting flow run ...") are what this test reads; an
        # in-process CLI test before it may have quieted Prefect's console in os.environ.
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "ARTICLEGEN_DATABASE_URL": postgres_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    workers = [_start_worker(pool, f"{pool}-w{i}", env) for i in (1, 2)]
    outputs: list[str] = []
    try:
        result = fan_out(
            params=GenerateParams(batch_size=5, overrides={"max_new_tokens": 4}),
            runs=4,
            deployment=f"generate-articles/{pool}",
            timeout_seconds=600,
        )
    finally:
        outputs = [_stop(worker) for worker in workers]
        close_contexts()
    assert set(result["runs"].values()) == {"Completed"}, outputs
    assert len(result["runs"]) == 4
    # Both workers took runs: each logged submitting at least one of the four.
    for worker, output in zip((1, 2), outputs, strict=True):
        submitted = [run for run in result["runs"] if f"submitting flow run '{run}'" in output]
        assert submitted, f"worker {worker} took no run:\n{output[-3000:]}"
    db = Database.open(postgres_url)
    try:
        _exactly_once(db, articles)
        with db.session(write=False) as session:
            jobs = session.scalars(select(Job)).all()
        assert len(jobs) == 4
        assert {j.status for j in jobs} == {JobStatus.COMPLETED}
        assert {j.parameters["shards"] for j in jobs} == {1}  # one shared queue
        assert sum(j.done for j in jobs) == articles
    finally:
        db.close()
