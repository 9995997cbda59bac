"""Claims, leases, crash reconciliation and idempotent write-back, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from articlegen.core.errors import JobStateError
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.articles import ArticleRow, PromptFailure, record_batch
from articlegen.db.claims import Shard, claim, count_claimable, reconcile, release, renew
from articlegen.db.jobs import check_resumable, create_job, request_cancel, start_job
from articlegen.db.models import utcnow

LEASE = timedelta(minutes=5)


def _seed(db: Database, n: int) -> list[int]:
    with db.session() as session:
        prompts = [Prompt(content_key=f"{i:064d}", topic=f"Topic {i}") for i in range(n)]
        session.add_all(prompts)
        session.flush()
        return [p.id for p in prompts]


def _job(session: Session) -> int:
    job = create_job(session, {}, "tiny")
    start_job(session, job.id, None, LEASE)
    return job.id


def _article(prompt_id: int, variant: int = 1) -> ArticleRow:
    return ArticleRow(
        prompt_id=prompt_id,
        variant=variant,
        version=1,
        raw_text="text",
        title="Title",
        body="Body.",
        rendered={},
        seed=1,
        decoding={},
        model_name="tiny",
        model_revision=None,
        template_name=None,
        template_version=None,
        prompt_tokens=0,
        tokens_generated=0,
        generation_seconds=0.0,
        timings={},
        finish_reason=None,
        metrics={},
    )


def _expire(db: Database, job_id: int) -> None:
    """The job's process died a lease ago: its lease and its prompts' ran out."""
    past = utcnow() - timedelta(seconds=1)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.execute(
            update(Prompt).where(Prompt.claimed_by == job_id).values(lease_expires_at=past)
        )


def test_a_claim_holds_its_prompts_until_its_lease_runs_out(database: Database) -> None:
    ids = _seed(database, 6)
    with database.session() as session:
        first = _job(session)
        taken = claim(session, first, LEASE, limit=4)
        assert [p.id for p in taken] == ids[:4]
        assert all(p.claimed_by == first and p.lease_expires_at for p in taken)
        second = _job(session)
        assert [p.id for p in claim(session, second, LEASE)] == ids[4:]
        assert claim(session, _job(session), LEASE) == []  # nothing left to take
    _expire(database, first)
    with database.session() as session:
        third = _job(session)
        retaken = claim(session, third, LEASE)
        assert [p.id for p in retaken] == ids[:4]
        assert {p.attempts for p in retaken} == {2}


def test_shards_split_the_prompts_without_overlap(database: Database) -> None:
    ids = _seed(database, 10)
    with database.session() as session:
        shards = [claim(session, _job(session), LEASE, shard=Shard(k, 3)) for k in range(3)]
    taken = [p.id for shard in shards for p in shard]
    assert sorted(taken) == ids
    for k, shard in enumerate(shards):
        assert {p.id % 3 for p in shard} == {k}


def test_renewal_extends_the_job_and_its_prompts(database: Database) -> None:
    _seed(database, 3)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, timedelta(seconds=10))
    with database.session() as session:
        assert renew(session, job_id, timedelta(hours=1)) == 3
    with database.session(write=False) as session:
        soon = utcnow() + timedelta(minutes=30)
        leases = session.scalars(select(Prompt.lease_expires_at)).all()
        assert all(lease is not None and lease > soon for lease in leases)
        job_lease = session.get_one(Job, job_id).lease_expires_at
        assert job_lease is not None
        assert job_lease > soon


def test_reconcile_marks_a_dead_job_crashed_and_keeps_its_articles(database: Database) -> None:
    ids = _seed(database, 4)
    with database.session() as session:
        dead = _job(session)
        claim(session, dead, LEASE)
        recorded = record_batch(session, dead, [_article(ids[0])], [])
        assert [a.prompt_id for a in recorded.articles] == [ids[0]]
        alive = _job(session)
    _expire(database, dead)
    with database.session() as session:
        assert reconcile(session) == [dead]
        assert reconcile(session) == []  # once
    with database.session(write=False) as session:
        job = session.get_one(Job, dead)
        assert job.status is JobStatus.CRASHED
        assert job.error is not None
        assert f"articlegen jobs resume {dead}" in job.error
        assert session.get_one(Job, alive).status is JobStatus.RUNNING
        statuses = {p.id: (p.status, p.claimed_by) for p in session.scalars(select(Prompt))}
        assert statuses[ids[0]] == (PromptStatus.DONE, dead)
        for prompt_id in ids[1:]:  # released, still naming the job that held them
            assert statuses[prompt_id] == (PromptStatus.PENDING, dead)
        assert session.scalar(select(func.count()).select_from(Article)) == 1


def test_a_run_that_lost_its_claim_writes_nothing_for_it(database: Database) -> None:
    ids = _seed(database, 2)
    with database.session() as session:
        slow = _job(session)
        claim(session, slow, LEASE)
    _expire(database, slow)
    with database.session() as session:
        fast = _job(session)
        assert len(claim(session, fast, LEASE)) == 2  # the slow run's prompts, taken over
        record_batch(session, fast, [_article(ids[0]), _article(ids[1])], [])
    with database.session() as session:
        late = record_batch(session, slow, [_article(ids[0]), _article(ids[1])], [])
        assert late.articles == []
        assert late.lost == ids
        assert session.get_one(Job, slow).done == 0
    with database.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 2
        assert set(session.scalars(select(Article.job_id))) == {fast}


def test_a_replayed_write_back_adds_and_counts_nothing(database: Database) -> None:
    ids = _seed(database, 2)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
    rows = [_article(ids[0], 1), _article(ids[0], 2)]
    failure = PromptFailure(ids[1], "the prompt is too long", 1)
    with database.session() as session:
        first = record_batch(session, job_id, rows, [failure])
        assert len(first.articles) == 2
    with database.session() as session:
        replay = record_batch(session, job_id, rows, [failure])
        assert replay.articles == []
    with database.session(write=False) as session:
        job = session.get_one(Job, job_id)
        assert (job.done, job.failed) == (2, 1)
        assert session.scalar(select(func.count()).select_from(Article)) == 2
        assert session.get_one(Prompt, ids[1]).status is PromptStatus.FAILED


def test_release_gives_back_only_what_the_job_holds(database: Database) -> None:
    ids = _seed(database, 4)
    with database.session() as session:
        mine, other = _job(session), _job(session)
        claim(session, mine, LEASE, limit=2)
        claim(session, other, LEASE)
        assert len(release(session, mine, [ids[0], ids[2]])) == 1  # ids[2] is the other job's
        assert len(release(session, mine)) == 1
        statuses = {p.id: p.status for p in session.scalars(select(Prompt))}
    assert statuses == {
        ids[0]: PromptStatus.PENDING,
        ids[1]: PromptStatus.PENDING,
        ids[2]: PromptStatus.CLAIMED,
        ids[3]: PromptStatus.CLAIMED,
    }


def test_resume_takes_the_dead_jobs_unfinished_prompts_first(database: Database) -> None:
    ids = _seed(database, 5)
    with database.session() as session:
        dead = _job(session)
        claim(session, dead, LEASE, limit=3)
        record_batch(session, dead, [_article(ids[0])], [])
        session.get_one(Prompt, ids[4]).priority = 9  # first for any other claim
    _expire(database, dead)
    with database.session() as session:
        reconcile(session)
        assert check_resumable(session, dead).status is JobStatus.CRASHED
        resumed = claim(session, _job(session), LEASE, resume_of=dead)
    assert [p.id for p in resumed] == [ids[1], ids[2], ids[4], ids[3]]


def test_a_claim_takes_a_batch_of_articles_at_most(database: Database) -> None:
    ids = _seed(database, 6)
    variants = dict(zip(ids, [2, 1, 3, 1, 1, 1], strict=True))
    with database.session() as session:
        job = _job(session)

        def take(budget: int) -> list[int]:
            taken = claim(session, job, LEASE, budget=budget, size=lambda p: variants[p.id])
            return [p.id for p in taken]

        assert take(4) == ids[:2]  # 2 + 1; the next prompt's 3 would make 6
        assert take(2) == [ids[2]]  # over the budget alone: still taken, whole
        assert take(10) == ids[3:]
        assert take(10) == []


def test_job_states_refuse_what_they_rule_out(database: Database) -> None:
    with database.session() as session:
        running = _job(session)
        queued = create_job(session, {}, "tiny").id
        with pytest.raises(JobStateError, match=rf"job {running} is running .*jobs cancel"):
            check_resumable(session, running)
        assert request_cancel(session, queued).status is JobStatus.CANCELLED
        with pytest.raises(JobStateError, match=rf"job {queued} has already ended \(cancelled\)"):
            request_cancel(session, queued)
        job = request_cancel(session, running)
        assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)
        session.get_one(Job, running).status = JobStatus.COMPLETED
        with pytest.raises(JobStateError, match=rf"job {running} is completed: .*nothing"):
            check_resumable(session, running)


def test_a_tagged_claim_takes_only_tagged_prompts_up_to_its_limit(database: Database) -> None:
    ids = _seed(database, 8)
    with database.session() as session:
        for prompt in session.scalars(select(Prompt)):
            index = ids.index(prompt.id)
            prompt.tags = ["rail", "night"] if index % 2 else ["food"]
    with database.session() as session:
        taken = claim(session, _job(session), LEASE, limit=3, tags=["night", "sea"])
        assert [p.id for p in taken] == [ids[1], ids[3], ids[5]]
        assert claim(session, _job(session), LEASE, tags=["sea"]) == []


def test_a_tagged_claim_locks_only_the_rows_it_takes(postgres_url: str) -> None:
    """On PostgreSQL, `FOR UPDATE` locks every row the query returns: with the tag filter and
    the limit in SQL, a claim of one tagged prompt leaves every other row free."""
    db = Database.open(postgres_url)
    try:
        ids = _seed(db, 6)
        with db.session() as session:
            for prompt in session.scalars(select(Prompt)):
                prompt.tags = ["rail"]
        with db.session() as claiming:
            (taken,) = claim(claiming, _job(claiming), LEASE, limit=1, tags=["rail"])
            # While that claim's transaction is open, another connection may lock the rest.
            with db.engine.connect() as other:
                free = other.scalars(
                    select(Prompt.id).order_by(Prompt.id).with_for_update(skip_locked=True)
                ).all()
        assert taken.id == ids[0]
        assert free == ids[1:]
    finally:
        db.close()


def test_text_with_nul_bytes_is_stored(database: Database) -> None:
    (prompt_id,) = _seed(database, 1)
    with database.session() as session:
        job_id = _job(session)
        claim(session, job_id, LEASE)
    nul = replace(_article(prompt_id), raw_text="a\x00b", title="T\x00", body="b\x00ody")
    with database.session() as session:
        (stored,) = record_batch(session, job_id, [nul], []).articles
        assert (stored.raw_text, stored.title, stored.body) == ("a\ufffdb", "T\ufffd", "b\ufffdody")


def test_the_count_of_claimable_prompts_is_what_a_claim_would_take(database: Database) -> None:
    ids = _seed(database, 9)
    with database.session() as session:
        for prompt in session.scalars(select(Prompt).where(Prompt.id.in_(ids[:3]))):
            prompt.tags = ["news"]
        session.get_one(Prompt, ids[8]).status = PromptStatus.DONE
        holder = _job(session)
        claim(session, holder, LEASE, limit=2)  # ids 0 and 1, held under a live lease

    def both(tags: tuple[str, ...] = (), shard: Shard | None = None) -> tuple[int, int]:
        with database.session() as session:
            counted = count_claimable(session, tags=tags, shard=shard)
            taken = len(claim(session, _job(session), LEASE, tags=tags, shard=shard))
            session.rollback()  # only looking
        return counted, taken

    assert both() == (6, 6)  # 9, less the done one and the two held
    assert both(tags=("news",)) == (1, 1)
    assert both(tags=("sport",)) == (0, 0)
    halves = [both(shard=Shard(i, 2)) for i in range(2)]
    assert all(counted == taken for counted, taken in halves)
    assert sum(counted for counted, _ in halves) == 6
    _expire(database, holder)  # its process died: its prompts can be claimed again
    assert both() == (8, 8)
    assert both(tags=("news",)) == (3, 3)
