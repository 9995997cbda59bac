"""Dead runs, found without waiting: a job's process (host, pid, namespace, start time) tells a
live run from a dead one on its own host, and a prompt that keeps killing its runs stops being
retried. Against SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select

from articlegen.core.process import ProcessIdentity, alive, current, identify
from articlegen.db import Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.claims import claim, reconcile, release
from articlegen.db.jobs import finish_job

from .conftest import CliHarness
from .test_leases import LEASE, _job, _seed


def _dead_process() -> ProcessIdentity:
    """A process of this host that ran and is gone."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        identity = identify(child.pid)
    finally:
        child.kill()
        child.wait()
    assert identity is not None
    return identity


def _owned_by(database: Database, job_id: int, process: ProcessIdentity) -> None:
    with database.session() as session:
        job = session.get_one(Job, job_id)
        job.host, job.pid, job.process_started = process.host, process.pid, process.started


def test_a_job_whose_process_is_gone_is_crashed_at_once(database: Database) -> None:
    ids = _seed(database, 3)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
    assert alive(current()) is True
    with database.session() as session:  # its own process runs: nothing to do
        assert reconcile(session) == []
    gone = _dead_process()
    assert alive(gone) is False
    _owned_by(database, job_id, gone)
    with database.session() as session:  # the lease has hours to run: the process decides
        assert reconcile(session) == [job_id]
    with database.session(write=False) as session:
        job = session.get_one(Job, job_id)
        prompts = session.scalars(select(Prompt).order_by(Prompt.id)).all()
    assert job.status is JobStatus.CRASHED
    assert job.error is not None
    assert f"its process (pid {gone.pid} on {gone.host}) is gone" in job.error
    assert [p.status for p in prompts] == [PromptStatus.PENDING] * 3
    assert [p.id for p in prompts] == ids
    history = [p.errors for p in prompts]
    assert all(len(h) == 1 and h[0]["job"] == job_id for h in history)
    assert "is gone" in history[0][0]["error"]


def test_only_the_jobs_own_process_keeps_it_alive(database: Database) -> None:
    """A live process of this host keeps its job; a reused pid, a process of an earlier boot,
    or one of another host or another container (pid namespace) is not taken for it."""
    _seed(database, 2)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
    here = current()
    assert here.started is not None
    boot, _, rest = here.started.partition("/")
    namespace = rest.rpartition("/")[0]
    sibling = subprocess.Popen(["sleep", "60"])
    try:
        live = identify(sibling.pid)
        assert live is not None
        assert alive(live) is True
        _owned_by(database, job_id, live)
        with database.session() as session:  # a live process of this host: left alone
            assert reconcile(session) == []
        cases = {
            # This pid runs, but it is not the process that started the job.
            "reused": (ProcessIdentity(here.host, sibling.pid, f"{boot}/{namespace}/1"), False),
            "earlier boot": (ProcessIdentity(here.host, sibling.pid, f"b0/{namespace}/1"), False),
            # Cannot tell from here: the lease decides.
            "other host": (ProcessIdentity("elsewhere", sibling.pid, live.started), None),
            "other container": (ProcessIdentity(here.host, 1, f"{boot}/pid:[1]/1"), None),
        }
        for name, (process, expected) in cases.items():
            assert alive(process) is expected, name
        for name in ("other host", "other container"):
            _owned_by(database, job_id, cases[name][0])
            with database.session() as session:
                assert reconcile(session) == [], name
        _owned_by(database, job_id, cases["reused"][0])
        with database.session() as session:
            assert reconcile(session) == [job_id]
    finally:
        sibling.kill()
        sibling.wait()


def test_a_prompt_claimed_too_often_fails_instead_of_going_back(database: Database) -> None:
    (prompt_id,) = _seed(database, 1)
    for attempt in (1, 2, 3):
        with database.session() as session:
            job_id = _job(session)
            (taken,) = claim(session, job_id, LEASE)
            assert taken.attempts == attempt
            released = len(release(session, job_id, max_attempts=3, error="killed"))
        with database.session(write=False) as session:
            prompt = session.get_one(Prompt, prompt_id)
        assert released == (1 if attempt < 3 else 0)
    assert prompt.status is PromptStatus.FAILED
    assert prompt.last_error is not None
    assert prompt.last_error.startswith(
        "claimed 3 times without being written (at most ARTICLEGEN_MAX_ATTEMPTS=3): its runs "
        "died or failed each time"
    )
    assert [e["error"] for e in prompt.errors] == ["killed"] * 3 + [prompt.last_error]
    assert [e["attempt"] for e in prompt.errors] == [1, 2, 3, 3]


def test_a_cancelled_run_gives_its_prompts_back_without_counting_an_attempt(
    database: Database,
) -> None:
    (prompt_id,) = _seed(database, 1)
    for _ in range(5):  # more than ARTICLEGEN_MAX_ATTEMPTS's 3: cancels never fail a prompt
        with database.session() as session:
            job_id = _job(session)
            claim(session, job_id, LEASE)
            assert len(release(session, job_id, uncount=True)) == 1
    with database.session(write=False) as session:
        prompt = session.get_one(Prompt, prompt_id)
    assert (prompt.status, prompt.attempts, prompt.errors) == (PromptStatus.PENDING, 0, [])


def test_a_run_marked_crashed_meanwhile_stays_crashed(database: Database) -> None:
    """Its lease ran out while it worked, and another run took its prompts: when it ends, its
    job keeps saying why, instead of claiming it completed."""
    _seed(database, 1)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
        job = session.get_one(Job, job_id)
        job.status, job.error = JobStatus.CRASHED, "its lease ran out"
    with database.session() as session:
        ended = finish_job(session, job_id)
        assert (ended.status, ended.error) == (JobStatus.CRASHED, "its lease ran out")


def test_resuming_a_job_with_nothing_left_starts_no_job(
    run_cli: CliHarness, database: Database
) -> None:
    """Its prompts were all written (by it, or by others since): `jobs resume` says so at once,
    and no new job row appears."""
    (prompt_id,) = _seed(database, 1)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
        session.get_one(Prompt, prompt_id).status = PromptStatus.DONE
        job = session.get_one(Job, job_id)
        job.status = JobStatus.CRASHED
    result = run_cli("jobs", "resume", str(job_id))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Nothing to resume: job {job_id} left nothing to write (other runs may have written "
        "its prompts).\n"
    )
    with database.session(write=False) as session:
        assert [j.id for j in session.scalars(select(Job))] == [job_id]


def test_resuming_a_job_whose_preset_is_gone_is_refused_before_a_new_job(
    run_cli: CliHarness, database: Database
) -> None:
    """The job ran with a preset of a presets file no longer set: `jobs resume` says so at
    once, as `generate` would, and writes no job row."""
    _seed(database, 1)
    with database.session() as session:
        job_id = _job(session)
        job = session.get_one(Job, job_id)
        job.parameters = {"preset": "briefed", "batch_size": 2}
        job.status = JobStatus.CRASHED  # before it claimed: its prompt is pending
    result = run_cli("jobs", "resume", str(job_id))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: unknown preset `briefed`")
    with database.session(write=False) as session:
        assert [j.id for j in session.scalars(select(Job))] == [job_id]


def test_resuming_a_chat_job_on_a_base_model_names_the_job_s_own_framing(
    run_cli: CliHarness, database: Database, tiny_model_dir: Path
) -> None:
    """Its options are stored, not typed again: the message says whose they are."""
    _seed(database, 1)
    with database.session() as session:
        job_id = _job(session)
        job = session.get_one(Job, job_id)
        job.parameters = {"style": {"prompt_format": "chat"}, "batch_size": 2}
        job.status = JobStatus.CRASHED
    env = {"ARTICLEGEN_MODEL": str(tiny_model_dir), "ARTICLEGEN_DEVICE": "cpu"}
    result = run_cli("jobs", "resume", str(job_id), env=env)
    assert result.exit_code == 1, result.output
    assert f"(job {job_id}'s own --prompt-format chat, the form's fields)" in result.stderr
    assert result.stderr.rstrip().endswith(
        "or resume it with the instruct model it ran on (ARTICLEGEN_MODEL)"
    )
    with database.session(write=False) as session:
        assert [j.id for j in session.scalars(select(Job))] == [job_id]
