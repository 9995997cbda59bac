"""`articlegen prompts retry`: failed prompts back in the queue, their history kept, each
variant still written once, and no prompt retried past ARTICLEGEN_MAX_ATTEMPTS. Through the CLI,
on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from articlegen.db import Database, Prompt, PromptStatus
from articlegen.db.articles import PromptFailure, record_batch
from articlegen.db.claims import claim, release
from articlegen.db.jobs import create_job, start_job
from articlegen.db.prompts import apply_upsert, plan_upsert
from articlegen.importing import PromptSpec

from .conftest import CliHarness, row_counts
from .test_leases import LEASE, _article


def _run(db: Database, written: list[tuple[int, int]], failed: dict[int, str]) -> int:
    """A job that claims every pending prompt, writes `written` (prompt, variant), fails
    `failed` and gives the rest back; returns its id."""
    with db.session() as session:
        job = create_job(session, {}, "tiny").id
        start_job(session, job, None, LEASE)
        claim(session, job, LEASE)
        articles = [_article(p, v) for p, v in written]
        failures = [PromptFailure(p, reason, 1) for p, reason in failed.items()]
        record_batch(session, job, articles, failures)
        release(session, job)
    return job


def _seed(db: Database) -> list[int]:
    specs = [
        PromptSpec(topic="Two variants", external_id="a", variants=2),
        PromptSpec(topic="Bad preset", external_id="b"),
        PromptSpec(topic="Fine", external_id="c"),
        PromptSpec(topic="Untouched", external_id="d"),
    ]
    with db.session() as session:
        apply_upsert(session, plan_upsert(session, specs))
        return [p.id for p in session.scalars(select(Prompt).order_by(Prompt.id))]


def _prompts(db: Database) -> dict[int, Prompt]:
    with db.session(write=False) as session:
        return {p.id: p for p in session.scalars(select(Prompt))}


def test_retry_requeues_a_jobs_failed_prompts_with_their_history(
    run_cli: CliHarness, database_url: str
) -> None:
    db = Database.open(database_url)
    try:
        a, b, c, d = _seed(db)
        job = _run(db, [(a, 1), (c, 1)], {a: "variant 2: out of memory", b: "no preset x"})
        before = row_counts(db)

        # A named prompt that has not failed: refused, nothing requeued.
        refused = run_cli("prompts", "retry", str(a), str(c))
        assert refused.exit_code == 1
        assert refused.stderr == (
            f"Error: prompt {c} is done, not failed: only failed prompts can be retried "
            "(nothing was requeued)\n"
        )
        assert {p.status for i, p in _prompts(db).items() if i in (a, b)} == {PromptStatus.FAILED}

        result = run_cli("prompts", "retry", "--job", str(job))
        assert result.exit_code == 0, result.output
        assert result.stdout == ("Requeued 2 failed prompts; `articlegen generate` writes them.\n")
        assert row_counts(db) == before  # a retry writes no article and no job
        prompts = _prompts(db)
        assert (prompts[a].status, prompts[b].status) == (PromptStatus.PENDING,) * 2
        assert (prompts[c].status, prompts[d].status) == (PromptStatus.DONE, PromptStatus.PENDING)
        assert prompts[a].last_error is None
        # Its first variant is written: the retry writes only the second.
        assert (prompts[a].regenerate, prompts[b].regenerate) == ([2], [])
        assert [(e["job"], e["error"]) for e in prompts[b].errors] == [(job, "no preset x")]

        # It fails again: the history grows.
        again = _run(db, [], {b: "no preset y"})
        assert [e["error"] for e in _prompts(db)[b].errors] == ["no preset x", "no preset y"]
        assert [e["job"] for e in _prompts(db)[b].errors] == [job, again]
    finally:
        db.close()


def test_retry_stops_at_the_most_attempts_allowed(run_cli: CliHarness, database_url: str) -> None:
    db = Database.open(database_url)
    try:
        a, b, _, _ = _seed(db)
        _run(db, [(a, 1), (a, 2)], {b: "no preset x"})  # b's first attempt
        env = {"ARTICLEGEN_MAX_ATTEMPTS": "1"}

        named = run_cli("prompts", "retry", str(b), env=env)
        assert named.exit_code == 1
        assert named.stderr == (
            f"Error: prompt {b} has been claimed once, as often as ARTICLEGEN_MAX_ATTEMPTS=1 "
            "allows: to retry anyway, raise ARTICLEGEN_MAX_ATTEMPTS for this command (nothing "
            "was requeued)\n"
        )
        bulk = run_cli("prompts", "retry", "--all-failed", env=env)
        assert bulk.exit_code == 0
        assert bulk.stdout == "No failed prompts to requeue.\n"
        assert bulk.stderr == (
            f"Left failed: prompt {b}, claimed as often as ARTICLEGEN_MAX_ATTEMPTS=1 allows "
            "(raise it to retry them).\n"
        )
        assert _prompts(db)[b].status is PromptStatus.FAILED

        raised = run_cli("prompts", "retry", str(b), str(b), env={"ARTICLEGEN_MAX_ATTEMPTS": "2"})
        assert raised.exit_code == 0
        assert raised.stdout == "Requeued 1 failed prompt; `articlegen generate` writes them.\n"
        assert _prompts(db)[b].status is PromptStatus.PENDING
    finally:
        db.close()


def test_retry_needs_to_be_told_which_prompts(run_cli: CliHarness) -> None:
    result = run_cli("prompts", "retry")
    assert result.exit_code == 2
    assert "Error: name failed prompts by id, or give --job J or --all-failed" in result.stderr


def test_retrying_a_failed_regeneration_writes_only_the_variants_it_asked_for(
    run_cli: CliHarness, database_url: str
) -> None:
    db = Database.open(database_url)
    try:
        a, b, _, _ = _seed(db)
        _run(db, [(a, 1), (a, 2), (b, 1)], {})  # a and b done, every variant written
        with db.session() as session:
            prompt = session.get_one(Prompt, a)
            prompt.status, prompt.regenerate = PromptStatus.PENDING, [2]  # a review's regenerate
        _run(db, [], {a: "out of memory"})
        assert _prompts(db)[a].regenerate == [2]  # a failure keeps what was asked for
        with db.session() as session:  # b failed too, with all its variants written
            session.get_one(Prompt, b).status = PromptStatus.FAILED

        named = run_cli("prompts", "retry", str(b))
        assert named.exit_code == 1
        assert named.stderr == (
            f"Error: prompt {b} already has an article of every variant: regenerate one from "
            "the review queue (`articlegen review regenerate ID`) instead (nothing was "
            "requeued)\n"
        )
        bulk = run_cli("prompts", "retry", "--all-failed")
        assert bulk.exit_code == 0
        assert bulk.stdout == "Requeued 1 failed prompt; `articlegen generate` writes them.\n"
        assert bulk.stderr == (
            f"Left failed: prompt {b}, with an article of every variant already (regenerate "
            "one from the review queue instead).\n"
        )
        prompts = _prompts(db)
        assert (prompts[a].status, prompts[a].regenerate) == (PromptStatus.PENDING, [2])
        assert prompts[b].status is PromptStatus.FAILED
    finally:
        db.close()
