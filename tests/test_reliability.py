"""Exactly once, for real: parallel `articlegen generate` processes, a run killed with SIGKILL and
resumed, a run cancelled between batches. Real processes, a real Prefect server, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, select

from articlegen.cli import cli
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.prompts import apply_upsert, plan_upsert
from articlegen.importing import PromptSpec
from articlegen.runs import close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

ARTICLEGEN = str(Path(sys.executable).parent / "articlegen")


def _seed(url: str, n: int, variants: Callable[[int], int] = lambda i: 1) -> int:
    """`n` prompts; returns how many articles they ask for."""
    specs = [
        PromptSpec(topic=f"Topic {i}", external_id=f"p{i:03d}", variants=variants(i))
        for i in range(n)
    ]
    db = Database.open(url)
    with db.session() as session:
        apply_upsert(session, plan_upsert(session, specs))
    db.close()
    return sum(s.variants for s in specs)


def _env(url: str, model_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": url,
        "ARTICLEGEN_MODEL": str(model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
        **extra,
    }


def _generate(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ARTICLEGEN, "generate", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _wait_for_articles(url: str, process: subprocess.Popen[str], at_least: int = 1) -> int:
    """Poll until `at_least` articles are written (the run's first batch); returns the count."""
    db = Database.open(url)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with db.session(write=False) as session:
                count = session.scalar(select(func.count()).select_from(Article)) or 0
            if count >= at_least:
                return count
            assert process.poll() is None, "the run ended before writing a batch"
            time.sleep(0.05)
        raise AssertionError("no article was written in time")
    finally:
        db.close()


def _exactly_once(db: Database, articles: int) -> list[Article]:
    """Every prompt is done, with exactly one article per variant; returns the articles."""
    with db.session(write=False) as session:
        prompts = session.scalars(select(Prompt)).all()
        stored = list(session.scalars(select(Article)))
    assert {p.status for p in prompts} == {PromptStatus.DONE}
    keys = Counter((a.prompt_id, a.variant) for a in stored)
    assert max(keys.values()) == 1  # none twice
    expected = {(p.id, v) for p in prompts for v in range(1, p.variants + 1)}
    assert set(keys) == expected
    assert len(stored) == articles
    return stored


def test_four_runs_at_once_write_every_article_once(
    prefect_server: None,  # noqa: F811
    database_url: str,
    tiny_model_dir: Path,
) -> None:
    articles = _seed(database_url, 200, variants=lambda i: 2 if i % 10 == 0 else 1)
    env = _env(database_url, tiny_model_dir)
    # Four runs of at most 50 prompts each: all 200 are written only if no two runs claimed
    # the same prompt.
    runs = [
        _generate(env, "--limit", "50", "--batch-size", "16", "--max-new-tokens", "4")
        for _ in range(4)
    ]
    outputs = [_finish(run) for run in runs]
    db = Database.open(database_url)
    try:
        stored = _exactly_once(db, articles)
        with db.session(write=False) as session:
            jobs = session.scalars(select(Job)).all()
        assert len(jobs) == 4
        assert {j.status for j in jobs} == {JobStatus.COMPLETED}, outputs
        assert sum(j.done for j in jobs) == articles
        assert all(j.done == j.total > 0 for j in jobs)
        per_job = Counter(a.job_id for a in stored)
        assert per_job == {j.id: j.done for j in jobs}
    finally:
        db.close()


def test_a_killed_run_resumes_without_losing_or_repeating_an_article(
    prefect_server: None,  # noqa: F811
    database_url: str,
    tiny_model_dir: Path,
) -> None:
    articles = _seed(database_url, 30)
    env = _env(database_url, tiny_model_dir, ARTICLEGEN_LEASE_SECONDS="3")
    run = _generate(env, "--batch-size", "3", "--max-new-tokens", "40")
    try:
        _wait_for_articles(database_url, run)
        run.kill()  # SIGKILL: no handler runs, nothing is released
    finally:
        run.communicate(timeout=60)
    assert run.returncode == -9
    db = Database.open(database_url)
    try:
        with db.session(write=False) as session:
            (dead,) = session.scalars(select(Job)).all()
            before = {a.id: (a.prompt_id, a.raw_text) for a in session.scalars(select(Article))}
            claimed = session.scalar(
                select(func.count()).where(Prompt.status == PromptStatus.CLAIMED)
            )
        assert dead.status is JobStatus.RUNNING  # nobody has noticed yet
        assert 0 < len(before) < articles
        assert claimed == articles - len(before)
        time.sleep(3.5)  # the lease runs out
        result = CliRunner().invoke(
            cli, ["jobs", "resume", str(dead.id)], env=_env(database_url, tiny_model_dir)
        )
        close_contexts()
        assert result.exit_code == 0, result.output
        remaining = articles - len(before)
        assert f"of {remaining} articles written, 0 failed" in result.output
        assert f"(resuming job {dead.id})" in result.output
        stored = _exactly_once(db, articles)
        with db.session(write=False) as session:
            crashed = session.get_one(Job, dead.id)
            (resumed,) = session.scalars(select(Job).where(Job.id != dead.id)).all()
        assert crashed.status is JobStatus.CRASHED
        assert crashed.done == len(before)
        assert resumed.status is JobStatus.COMPLETED
        assert resumed.parameters["resume_job"] == dead.id
        assert resumed.done == resumed.total == remaining
        after = {a.id: (a.prompt_id, a.raw_text) for a in stored}
        assert {k: after[k] for k in before} == before  # the finished articles are intact
    finally:
        db.close()


def test_cancel_stops_a_run_between_batches(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tiny_model_dir: Path,
) -> None:
    # 50 batches: the run is still busy when the cancel lands, even on a slow machine.
    _seed(sqlite_url, 100)
    env = _env(sqlite_url, tiny_model_dir)
    run = _generate(env, "--batch-size", "2", "--max-new-tokens", "60")
    try:
        _wait_for_articles(sqlite_url, run)
        db = Database.open(sqlite_url)
        with db.session(write=False) as session:
            (job,) = session.scalars(select(Job)).all()
        result = CliRunner().invoke(cli, ["jobs", "cancel", str(job.id)], env=env)
        close_contexts()
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"Job {job.id} will stop before its next batch; the prompts it has not written go "
            f"back to pending. Watch it with `articlegen jobs show {job.id}`.\n"
        )
    finally:
        output = _finish(run)
    assert f"Job {job.id} cancelled:" in output
    with db.session(write=False) as session:
        job = session.get_one(Job, job.id)
        counts = Counter(p.status for p in session.scalars(select(Prompt)))
        written = session.scalar(select(func.count()).select_from(Article)) or 0
    db.close()
    assert job.status is JobStatus.CANCELLED
    assert 0 < job.done == written < 100
    assert counts == {PromptStatus.DONE: written, PromptStatus.PENDING: 100 - written}
    again = CliRunner().invoke(cli, ["jobs", "cancel", str(job.id)], env=env)
    close_contexts()
    assert again.exit_code == 1
    assert again.output == (
        f"Error: job {job.id} has already ended (cancelled): nothing to cancel\n"
    )


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (JobStatus.COMPLETED, "is completed: there is nothing of it to resume"),
        (JobStatus.RUNNING, "is running (its lease runs until"),
    ],
)
def test_resume_refuses_a_job_with_nothing_to_resume(
    sqlite_url: str, status: JobStatus, message: str
) -> None:
    from datetime import timedelta

    from articlegen.db.models import utcnow

    db = Database.open(sqlite_url)
    with db.session() as session:
        job = Job(status=status, parameters={}, lease_expires_at=utcnow() + timedelta(hours=1))
        session.add(job)
        session.flush()
        job_id = job.id
    db.close()
    result = CliRunner().invoke(
        cli, ["jobs", "resume", str(job_id)], env={"ARTICLEGEN_DATABASE_URL": sqlite_url}
    )
    close_contexts()
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: job {job_id} {message}")
    assert "Traceback" not in result.output
