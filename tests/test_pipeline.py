"""The pipelined `generate-articles` flow, run for real: batch k finishes (post-processing,
rendering, write-back) while batch k+1 generates, and every article is still written exactly
once, whatever fails where.

Faults are injected at the edges we own: `runs.observing_batches` hears each batch step start in
the thread that runs it, and may pause it or fail it; a database trigger fails a write-back
inside its transaction, as a full disk would. Each test runs on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Artifact
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from articlegen import runs
from articlegen.core.errors import ConfigError
from articlegen.core.settings import load_settings
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.jobs import request_cancel
from articlegen.db.prompts import apply_upsert, plan_upsert
from articlegen.flows.generate import run_generate
from articlegen.importing import PromptSpec
from articlegen.runs import (
    BatchReport,
    BatchStep,
    GenerateParams,
    RunProgress,
    RunResult,
    close_contexts,
    observing_batches,
    stage_seconds,
    summary_markdown,
)
from articlegen.runs.lifecycle import CancelWatch

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

# Eight prompts in four batches of two: the pipeline is full in the middle of the run.
PROMPTS = 8
PARAMS = GenerateParams(batch_size=2, overrides={"max_new_tokens": 6})
# How long a paused step waits for the other thread. Generous: on a busy machine a step can
# take seconds; a step that waits this long has found the pipeline run one batch at a time.
PATIENCE = 60.0

Steps = list[tuple[int, BatchStep]]

# A trigger that fails every insert once the articles table holds two rows (batch 1's), with
# an integrity error, which the flow does not retry. Rows inserted earlier by the same
# statement count, on both backends.
FAIL_BATCH_2 = {
    "sqlite": [
        "CREATE TRIGGER fail_batch_2 BEFORE INSERT ON articles "
        "WHEN (SELECT count(*) FROM articles) >= 2 "
        "BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION fail_batch_2() RETURNS trigger AS $$ BEGIN "
        "IF (SELECT count(*) FROM articles) >= 2 THEN RAISE EXCEPTION 'disk full (injected)' "
        "USING ERRCODE = 'integrity_constraint_violation'; END IF; RETURN NEW; END "
        "$$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_batch_2 BEFORE INSERT ON articles FOR EACH ROW "
        "EXECUTE FUNCTION fail_batch_2()",
    ],
}


@pytest.fixture
def db(
    prefect_server: None,  # noqa: F811
    database_url: str,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    """A database with eight pending prompts of one article each, and the settings a flow
    reads."""
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", database_url)
    monkeypatch.setenv("ARTICLEGEN_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("ARTICLEGEN_DEVICE", "cpu")
    db = Database.open(database_url)
    specs = [PromptSpec(topic=f"Topic {i}", external_id=f"p{i}") for i in range(PROMPTS)]
    with db.session() as session:
        apply_upsert(session, plan_upsert(session, specs))
    yield db
    db.close()
    close_contexts()


def _statuses(db: Database) -> Counter[PromptStatus]:
    with db.session(write=False) as session:
        return Counter(p.status for p in session.scalars(select(Prompt)))


def _exactly_once(db: Database) -> None:
    """Every prompt is done with exactly one article, each a first version."""
    with db.session(write=False) as session:
        articles = list(session.scalars(select(Article)))
        prompts = list(session.scalars(select(Prompt)))
    assert {p.status for p in prompts} == {PromptStatus.DONE}
    assert sorted(a.prompt_id for a in articles) == sorted(p.id for p in prompts)
    assert {(a.variant, a.version) for a in articles} == {(1, 1)}


def _the_job(db: Database) -> Job:
    with db.session(write=False) as session:
        return session.scalars(select(Job).order_by(Job.id)).first()  # type: ignore[return-value]


def _task_runs(records: list[logging.LogRecord]) -> list[str]:
    """The task runs that ended Completed, by name, in the order they ended."""
    return [
        str(getattr(r, "task_run_name", ""))
        for r in records
        if r.name == "prefect.task_runs" and r.getMessage() == "Finished in state Completed()"
    ]


def test_a_batch_finishes_while_the_next_generates_and_each_is_written_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    steps: Steps = []
    second_generating = threading.Event()
    overlapped: list[bool] = []

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        steps.append((number, step))
        if (number, step) == (2, "generate"):
            second_generating.set()
        if (number, step) == (1, "finish"):
            # Batch 1 finishes only once batch 2 has begun to generate, which it can only if
            # the two overlap: run one after the other, this would wait in vain.
            overlapped.append(second_generating.wait(PATIENCE))

    with caplog.at_level(logging.INFO, logger="prefect"), observing_batches(observe):
        result = run_generate(PARAMS)
    assert overlapped == [True]
    assert (result.status, result.total, result.done, result.failed) == ("completed", 8, 8, 0)
    _exactly_once(db)
    # Each batch generated once and finished once, in order, each finish on another thread.
    assert [n for n, step in steps if step == "generate"] == [1, 2, 3, 4]
    assert [n for n, step in steps if step == "finish"] == [1, 2, 3, 4]

    job = _the_job(db)
    assert (job.status, job.done, job.total) == (JobStatus.COMPLETED, 8, 8)
    # One log line per batch, in order, each once its batch is recorded.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch ")]
    assert [line.split(":")[0] for line in lines] == [f"batch {n}" for n in (1, 2, 3, 4)]
    pattern = r"batch \d: 2 articles written, [\d,]+ tokens/s, none failed"
    assert all(re.fullmatch(pattern, line) for line in lines), lines
    # Each batch is a claim and two task runs in Prefect, by name; the fifth claim finds the
    # queue empty.
    ended = [name for name in _task_runs(caplog.records) if name.startswith("job-")]
    assert sorted(ended) == sorted(
        [f"job-{job.id}-claim-{n}" for n in (1, 2, 3, 4, 5)]
        + [f"job-{job.id}-batch-{n}-{s}" for n in (1, 2, 3, 4) for s in ("generate", "finish")]
    )
    # Where the time went: every stage, and how long the run waited for batches finishing.
    assert set(result.seconds) == {
        "loading",
        "prompting",
        "generation",
        "post-processing",
        "rendering",
        "write-back",
        "waiting",
        "orchestration",
    }
    bar = _progress_bar(job)
    assert bar.data == 100.0
    assert (bar.description or "").startswith("8/8 articles · ")


def _progress_bar(job: Job) -> Artifact:
    """The job's progress artifact, as its flow run left it."""
    with get_client(sync_client=True) as client:
        progress = client.read_artifacts()
    # This run's: job ids start again at 1 in each test's database, on one Prefect server.
    (bar,) = [
        a
        for a in progress
        if a.key == f"job-{job.id}-progress" and str(a.flow_run_id) == job.flow_run_id
    ]
    return bar


def test_a_failed_write_back_gives_back_its_batch_and_the_one_generated_beside_it(
    db: Database,
) -> None:
    # The write-back of batch 2 fails inside its transaction: the first two articles are
    # batch 1's, and the next insert aborts, as a full disk would.
    with db.engine.begin() as connection:
        for statement in FAIL_BATCH_2[db.engine.dialect.name]:
            connection.exec_driver_sql(statement)
    steps: Steps = []
    abandoned: list[bool] = []

    def observe(job: int, number: int, step: BatchStep) -> None:
        steps.append((number, step))
        if (number, step) == (3, "generate"):
            # Batch 3 waits for batch 2's failure: once heard, the run abandons batch 3,
            # which stops at its first decoding step (`CancelWatch`) instead of running on.
            deadline = time.monotonic() + PATIENCE
            while not runs.abandoned(job) and time.monotonic() < deadline:
                time.sleep(0.05)
            abandoned.append(runs.abandoned(job))
            progress.append(runs.progress_for(job))

    progress: list[RunProgress] = []
    with observing_batches(observe), pytest.raises(IntegrityError, match="disk full"):
        run_generate(PARAMS)
    assert abandoned == [True]
    # Batch 3 generated nothing: its articles were cut before their first token, so the run
    # counted batches 1 and 2's four articles only (6, had it generated on to its end).
    assert progress[0].snapshot().done == 4
    # Batch 3 was generated while batch 2 failed to finish; it was never finished, and batch 4
    # never started.
    assert (3, "generate") in steps
    assert (3, "finish") not in steps
    assert (4, "generate") not in steps
    failed = _the_job(db)
    assert failed.status is JobStatus.FAILED
    assert (failed.error or "").startswith("IntegrityError: ")
    assert failed.done == 2
    # Batch 1 stays written; batch 2, batch 3 (generated, unrecorded) and batch 4 go back.
    assert _statuses(db) == {PromptStatus.DONE: 2, PromptStatus.PENDING: 6}
    with db.session(write=False) as session:
        written = {a.prompt_id for a in session.scalars(select(Article))}
        done = {p.id for p in session.scalars(select(Prompt)) if p.status is PromptStatus.DONE}
    assert written == done

    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TRIGGER fail_batch_2"
            + (" ON articles" if db.engine.dialect.name == "postgresql" else "")
        )
    again = run_generate(PARAMS)
    assert (again.status, again.total, again.done) == ("completed", 6, 6)
    _exactly_once(db)


def test_a_failed_generation_keeps_the_batch_finishing_beside_it(db: Database) -> None:
    second_generating = threading.Event()

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        if (number, step) == (2, "generate"):
            second_generating.set()
            # A user's mistake is not retried: the run fails at once.
            raise ConfigError("generation failed (injected)")
        if (number, step) == (1, "finish"):
            second_generating.wait(PATIENCE)
            time.sleep(0.5)  # still recording when the run's failure is handled

    with observing_batches(observe), pytest.raises(ConfigError, match="injected"):
        run_generate(PARAMS)
    failed = _the_job(db)
    assert failed.status is JobStatus.FAILED
    assert (failed.error or "") == "ConfigError: generation failed (injected)"
    # The run waited for batch 1 to be recorded before giving back the rest.
    assert failed.done == 2
    assert _statuses(db) == {PromptStatus.DONE: 2, PromptStatus.PENDING: 6}

    again = run_generate(PARAMS)
    assert (again.status, again.done) == ("completed", 6)
    _exactly_once(db)


def test_cancel_stops_a_batch_within_a_decoding_step_and_keeps_what_ended(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch of all eight articles through two rows, long ones: `jobs cancel` lands while
    it generates, and the run stops there (within a second), not at the end of the batch.
    The articles that ended are written; the others go back to pending; a rerun writes each
    of those once."""
    monkeypatch.setenv("ARTICLEGEN_QUEUE_DEPTH", "4")  # 2 rows x 4: one batch of 8 articles
    long = GenerateParams(batch_size=2, preset="greedy", overrides={"max_new_tokens": 400})

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        if (number, step) == (1, "generate"):
            with db.session() as session:
                request_cancel(session, job_id)  # `articlegen jobs cancel`, as it starts

    with observing_batches(observe):
        result = run_generate(long)
    assert result.status == "cancelled"
    assert result.done < PROMPTS  # the batch was cut short
    expected = Counter(
        {PromptStatus.DONE: result.done, PromptStatus.PENDING: PROMPTS - result.done}
    )
    assert _statuses(db) == +expected  # (+: without a zero count)
    job = _the_job(db)
    assert job.error == "stopped by `articlegen jobs cancel`"

    again = run_generate(PARAMS)
    assert (again.status, again.done) == ("completed", PROMPTS - result.done)
    _exactly_once(db)


def test_a_failed_run_gives_back_the_batch_it_claimed_ahead_uncounted(db: Database) -> None:
    """Batch 3 is claimed before batch 2 generates (its articles may start in batch 2's last
    rows). Batch 2's failure fails the run: batch 2's prompts count the attempt, batch 3's,
    which the failure never reached, do not."""
    claims: list[int] = []

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        if step == "claim":
            claims.append(number)
        if (number, step) == (2, "generate"):
            raise ConfigError("generation failed (injected)")

    with observing_batches(observe), pytest.raises(ConfigError, match="injected"):
        run_generate(PARAMS)
    assert claims == [1, 2, 3]  # each batch claimed before the one before it generated
    assert _statuses(db) == {PromptStatus.DONE: 2, PromptStatus.PENDING: 6}
    with db.session(write=False) as session:
        pending = [p for p in session.scalars(select(Prompt)) if p.status is PromptStatus.PENDING]
    # Batch 2's two prompts were attempted; batch 3's two and batch 4's two were not.
    assert Counter(p.attempts for p in pending) == {1: 2, 0: 4}
    assert _the_job(db).total == 4  # batches 1 and 2: batch 3 came off at the end
    again = run_generate(PARAMS)
    assert (again.status, again.done) == ("completed", 6)
    _exactly_once(db)


def test_a_cancelled_run_counts_only_the_articles_it_started(db: Database) -> None:
    """Two variants a prompt: a batch is one prompt. Batch 2 is claimed before batch 1
    generates, and a cancel during batch 1 stops the run there: batch 2 goes back unattempted,
    and the job's total, which counted its two articles at the claim, drops them."""
    claims: list[int] = []

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        if step == "claim":
            claims.append(number)
        if (number, step) == (1, "generate"):
            with db.session() as session:
                request_cancel(session, job_id)

    with observing_batches(observe):
        result = run_generate(PARAMS.model_copy(update={"variants": 2}))
    assert claims == [1, 2]
    assert (result.status, result.total, result.prompts) == ("cancelled", 2, 1)
    job = _the_job(db)
    assert job.total == 2
    assert _progress_bar(job).description == f"Cancelled: {job.done} of 2 articles written."
    with db.session(write=False) as session:
        attempts = [p.attempts for p in session.scalars(select(Prompt))]
    assert attempts == [0] * PROMPTS


def test_a_job_cancelled_while_queued_takes_no_prompt(db: Database) -> None:
    """`jobs cancel` of a job still queued (its run is loading the model) cancels it at once;
    its run then claims nothing and ends cancelled, with the reason the cancel gave."""
    settings = load_settings()
    job_id = runs.open_job(settings, PARAMS)
    with db.session() as session:
        cancelled_at = request_cancel(session, job_id).finished_at
    claims: list[int] = []

    def observe(job_id: int, number: int, step: BatchStep) -> None:
        if step == "claim":
            claims.append(number)

    with observing_batches(observe):
        result = run_generate(PARAMS, job_id)
    assert claims == []
    assert (result.status, result.total, result.done) == ("cancelled", 0, 0)
    job = _the_job(db)
    assert (job.error, job.started_at) == ("cancelled before it started", None)
    assert job.finished_at == cancelled_at  # when it was cancelled, not when its run ended
    assert _progress_bar(job).description == "Cancelled: 0 of 0 articles written."
    with db.session(write=False) as session:
        prompts = list(session.scalars(select(Prompt)))
    assert [(p.status, p.attempts) for p in prompts] == [(PromptStatus.PENDING, 0)] * PROMPTS


def test_only_a_run_going_on_can_be_abandoned(db: Database) -> None:
    settings = load_settings()
    job_id = runs.open_job(settings, PARAMS)
    watch = CancelWatch(settings, job_id, every=0.0)  # the engine's `stop` for this job
    runs.abandon(job_id)  # before its run started: nothing to stop
    assert watch() is False  # read from the database: not cancelled either
    assert runs.start_run(settings, job_id, PARAMS) == PROMPTS
    runs.abandon(job_id)
    assert watch() is True
    other = runs.open_job(settings, PARAMS)
    assert CancelWatch(settings, other)() is False  # another job's run goes on
    # The run ends; a failure heard after that (a late callback) stops nothing more.
    runs.finish_run(settings, job_id, PARAMS, error="failed (injected)")
    runs.abandon(job_id)
    assert (runs.abandoned(job_id), CancelWatch(settings, job_id)()) == (False, False)


def test_finishing_counts_towards_the_run_time_only_through_the_wait() -> None:
    batch = BatchReport(
        seconds={"loading": 1.0, "generation": 5.0, "post-processing": 2.0, "write-back": 1.0}
    )
    seconds = stage_seconds([batch, batch], wall=15.0, waited=0.5)
    assert seconds == {
        "loading": 2.0,
        "generation": 10.0,
        "post-processing": 4.0,
        "write-back": 2.0,
        "waiting": 0.5,
        "orchestration": 2.5,  # 15 s, less loading, generation and the wait
    }
    result = RunResult(job=1, status="completed", total=2, done=2, seconds=seconds)
    summary = summary_markdown(result, [batch, batch], GenerateParams())
    assert "| generation | 10.0 | 67% |" in summary  # a share of the run's 15 s
    assert "| post-processing | 4.0 | 27% |" in summary
    assert "ran beside the next batch's generation; `waiting` is how long" in summary
