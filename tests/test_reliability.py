"""Exactly once, for real: parallel `articlegen generate` processes, a run killed with SIGKILL and
resumed, a run cancelled between batches. Real processes, a real Prefect server, real databases."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, select

from articlegen.cli import cli
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.prompts import apply_upsert, plan_upsert
from articlegen.importing import PromptSpec
from articlegen.runs import BatchStep, close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

ARTICLEGEN = str(Path(sys.executable).parent / "articlegen")
ROOT = Path(__file__).resolve().parent.parent


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


def _child(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`articlegen generate` steered by `tests/run_child.py` (its first three arguments)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.run_child", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _wait_for(
    url: str, process: subprocess.Popen[str], query: Any, at_least: int, what: str
) -> int:
    """Poll until `query` counts `at_least` while the run goes on; returns the count."""
    db = Database.open(url)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with db.session(write=False) as session:
                count = session.scalar(query) or 0
            if count >= at_least:
                return count
            assert process.poll() is None, f"the run ended before {what}"
            time.sleep(0.02)
        raise AssertionError(f"the run was not {what} in time")
    finally:
        db.close()


def _wait_for_articles(url: str, process: subprocess.Popen[str], at_least: int = 1) -> int:
    """Poll until `at_least` articles are written (the run's first batch); returns the count."""
    query = select(func.count()).select_from(Article)
    return _wait_for(url, process, query, at_least, "writing a batch")


def _wait_for_claims(url: str, process: subprocess.Popen[str]) -> None:
    """Poll until the run holds claimed prompts: a kill between one batch's write-back and the
    next claim would leave nothing held for the next run to take over (seen on a busy CI)."""
    query = select(func.count()).where(Prompt.status == PromptStatus.CLAIMED)
    _wait_for(url, process, query, 1, "holding a batch")


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


def _on_both(check: Callable[[str, int], None], articles: Callable[[str], int], *urls: str) -> None:
    """`check(url, articles(url))` on a SQLite file and on PostgreSQL at once: its runs are
    processes that mostly wait for each other, so the two backends share the machine's time
    instead of adding up. `articles` seeds each database first, here: Alembic's migrations
    are not to be run from two threads at once."""
    seeded = {url: articles(url) for url in urls}
    with ThreadPoolExecutor(len(urls)) as pool:
        futures = {
            url.partition(":")[0]: pool.submit(check, url, count) for url, count in seeded.items()
        }
        for name, future in futures.items():
            try:
                future.result()
            except BaseException as exc:
                raise AssertionError(f"on {name}: {exc}") from exc


def test_three_runs_share_the_queue_and_write_every_article_once(
    prefect_server: None,  # noqa: F811
    database_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """Three runs started together, no --limit: they pull batches from one queue, so each
    writes a share and every article is written once. (Each waits after its first claim until
    all three have claimed: a process's start-up, seconds of imports here, is not the queue's
    to even out. One backend at a time: SQLite's lock is not fair to writers that wait, and a
    machine busy with another test's runs makes that show.)"""
    # 165 articles, 21 batches: seven each when shared evenly, and one run taking most shows.
    articles = _seed(database_url, 150, variants=lambda i: 2 if i % 10 == 0 else 1)
    ready = tmp_path / "ready"
    ready.mkdir()

    def env(run: int) -> dict[str, str]:
        # Each run with the temporary Prefect server of its own that `articlegen generate`
        # starts, as three runs started by hand would: with the tests' one server (SQLite
        # behind one process) orchestrating all three, its order of service, not the queue,
        # decided the shares (one run wrote 66% on PostgreSQL).
        own = _env(database_url, tiny_model_dir, PREFECT_HOME=str(tmp_path / f"prefect-{run}"))
        del own["PREFECT_API_URL"]
        return own

    # Batches long enough that generating them, not the wait for a lock or for the test's one
    # Prefect server (which serves whoever asks at the right moment), sets each run's pace:
    # with 8-token articles, one run could write two thirds of the queue, with 64 on SQLite 62%.
    options = ("--batch-size", "8", "--max-new-tokens", "128")
    runs = [_child(env(run), "together", str(ready), "3", *options) for run in range(3)]
    outputs = [_finish(run) for run in runs]
    db = Database.open(database_url)
    try:
        stored = _exactly_once(db, articles)
        with db.session(write=False) as session:
            jobs = session.scalars(select(Job)).all()
    finally:
        db.close()
    assert len(jobs) == 3
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}, outputs
    assert sum(j.done for j in jobs) == articles
    assert Counter(a.job_id for a in stored) == {j.id: j.done for j in jobs}
    # Each run wrote a share, and none most of it: they worked side by side to the end.
    shares = sorted(j.done / articles for j in jobs)
    assert shares[0] > 0, shares
    assert shares[-1] <= 0.6, shares
    assert all(j.done == j.total for j in jobs)  # a run's total is what it claimed


def _killed_mid_batch(url: str, tiny_model_dir: Path, articles: int) -> tuple[Job, dict[int, Any]]:
    """Start a run, SIGKILL it once it has written a batch; returns its job and the articles
    it wrote (id: prompt and text)."""
    run = _generate(_env(url, tiny_model_dir), "--batch-size", "3", "--max-new-tokens", "40")
    try:
        _wait_for_articles(url, run)
        _wait_for_claims(url, run)
        run.kill()  # SIGKILL: no handler runs, nothing is released
    finally:
        run.communicate(timeout=60)
    assert run.returncode == -9
    db = Database.open(url)
    try:
        with db.session(write=False) as session:
            (dead,) = session.scalars(select(Job)).all()
            before = {a.id: (a.prompt_id, a.raw_text) for a in session.scalars(select(Article))}
            claimed = session.scalar(
                select(func.count()).where(Prompt.status == PromptStatus.CLAIMED)
            )
    finally:
        db.close()
    assert dead.status is JobStatus.RUNNING  # nobody has noticed yet
    assert 0 < len(before) < articles
    # It held one batch or two (the next one claimed while the last finished), not the rest.
    assert 0 < (claimed or 0) <= 6
    return dead, before


# The next run after a kill: `generate` on one backend, `jobs resume` on the other.
@pytest.mark.parametrize(("backend", "command"), [("sqlite", "generate"), ("postgres", "resume")])
def test_the_next_run_finishes_a_killed_runs_work_without_waiting(
    prefect_server: None,  # noqa: F811
    request: pytest.FixtureRequest,
    tiny_model_dir: Path,
    backend: str,
    command: str,
) -> None:
    """A run killed with SIGKILL holds a lease of minutes (the default, 300 s); on its own
    host, the very next `generate` or `jobs resume` sees its process gone and goes on."""
    database_url: str = request.getfixturevalue(f"{backend}_url")
    articles = _seed(database_url, 30)
    dead, before = _killed_mid_batch(database_url, tiny_model_dir, articles)
    args = ["generate"] if command == "generate" else ["jobs", "resume", str(dead.id)]
    result = CliRunner().invoke(cli, args, env=_env(database_url, tiny_model_dir))
    close_contexts()
    assert result.exit_code == 0, result.output
    remaining = articles - len(before)
    assert f"of {remaining} articles written, 0 failed" in result.output
    if command == "resume":
        assert f"(resuming job {dead.id})" in result.output
    db = Database.open(database_url)
    try:
        stored = _exactly_once(db, articles)
        with db.session(write=False) as session:
            crashed = session.get_one(Job, dead.id)
            (after_it,) = session.scalars(select(Job).where(Job.id != dead.id)).all()
            history = [p.errors for p in session.scalars(select(Prompt))]
        assert crashed.status is JobStatus.CRASHED
        assert crashed.error is not None
        assert f"its process (pid {crashed.pid} on {crashed.host}) is gone" in crashed.error
        assert crashed.done == len(before)
        assert after_it.status is JobStatus.COMPLETED
        assert after_it.done == after_it.total == remaining
        if command == "resume":
            assert after_it.parameters["resume_job"] == dead.id
        # The prompts the dead run held carry that in their history.
        assert sum(1 for h in history if h and h[-1]["job"] == dead.id) >= 1
        after = {a.id: (a.prompt_id, a.raw_text) for a in stored}
        assert {k: after[k] for k in before} == before  # the finished articles are intact
    finally:
        db.close()


# Each killed run takes at most three batches of two articles.
CHILD_OPTIONS = ("--limit", "6", "--batch-size", "2", "--max-new-tokens", "6")
# Where a run can die, in a run's order (`runs.observing_batches`).
STEPS: tuple[BatchStep, ...] = ("claim", "generate", "finish", "record", "close")


def _consistent(db: Database) -> None:
    """What must hold after any crash: no article twice, a done prompt has every variant, a
    job counts exactly its articles, nothing failed."""
    with db.session(write=False) as session:
        prompts = session.scalars(select(Prompt)).all()
        stored = session.scalars(select(Article)).all()
        jobs = session.scalars(select(Job)).all()
    keys = Counter((a.prompt_id, a.variant) for a in stored)
    assert not keys or max(keys.values()) == 1
    for prompt in prompts:
        assert prompt.status is not PromptStatus.FAILED, prompt.last_error
        if prompt.status is PromptStatus.DONE:
            assert {v for p, v in keys if p == prompt.id} == set(range(1, prompt.variants + 1))
    per_job = Counter(a.job_id for a in stored)
    assert {j.id: j.done for j in jobs if j.done} == dict(per_job)


def test_runs_killed_at_random_points_lose_and_repeat_nothing(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    postgres_url: str,
    tiny_model_dir: Path,
) -> None:
    """Ten runs, each killed with SIGKILL at a point drawn from its seed (inside the claim's
    transaction, as a batch starts generating, as it starts finishing, inside the write-back's
    transaction, inside the job's closing transaction; `tests/run_child.py`), each one after the
    last on one database: the next run always recovers the dead one, and in the end every
    article is written exactly once. On SQLite and on PostgreSQL."""

    def chain(url: str, articles: int) -> None:
        # Each kill counts an attempt on the prompts it held: none may run out of them here.
        env = _env(url, tiny_model_dir, ARTICLEGEN_MAX_ATTEMPTS="100")
        db = Database.open(url)
        try:
            for seed in range(10):
                step = STEPS[seed % len(STEPS)]  # every step, twice
                number = 0 if step == "close" else random.Random(seed).randint(1, 3)
                child = _child(env, "kill", step, str(number), *CHILD_OPTIONS)
                output, _ = child.communicate(timeout=300)
                assert child.returncode == -9, (seed, step, output)
                _consistent(db)
            _finish(_generate(env, "--batch-size", "4", "--max-new-tokens", "6"))
            _exactly_once(db, articles)
            with db.session(write=False) as session:
                jobs = session.scalars(select(Job).order_by(Job.id)).all()
        finally:
            db.close()
        # Every killed run is recognised as dead, by the run after it.
        assert [j.status for j in jobs] == [JobStatus.CRASHED] * 10 + [JobStatus.COMPLETED]

    def seed(url: str) -> int:
        return _seed(url, 70, variants=lambda i: 2 if i % 7 == 0 else 1)

    _on_both(chain, seed, sqlite_url, postgres_url)


def test_cancel_stops_a_run_and_gives_back_what_it_did_not_write(
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
            f"Job {job.id} will stop within a second: it writes the articles it finished, and "
            "the prompts it has not written go back to pending. Watch it with `articlegen jobs "
            f"show {job.id}`.\n"
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
        (JobStatus.RUNNING, "is running (its process, its lease runs until"),
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
