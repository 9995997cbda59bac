"""One queue across calls: the next call's requests start in this call's tail (`ahead`).

A flow run claims its next batch before the current one generates and hands it to the engine
as `ahead`: rows the current batch's last articles leave take the next batch's articles, which
go on decoding in the next call. Every article must be the same token for token as alone,
whatever call it started in, and anything but the promised next call starts afresh.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from articlegen.core.settings import Settings
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.generator import PresetCatalog
from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel, ModelSpec, load_model
from articlegen.generator.requests import DecodeStep, Generation, GenerationRequest
from articlegen.runs import (
    GenerateParams,
    claim_batch,
    context_for,
    finish_batch,
    finish_run,
    generate_batch,
    open_job,
    progress_for,
    start_run,
)
from tests.queue_support import PROMPTS, OutOfMemoryAbove, generations, seeded_run


def _mixed(first: int, count: int, **update: Any) -> list[GenerationRequest]:
    """`count` requests of 2 to 17 tokens, keys from `first`, greedy and sampled."""
    requests = []
    for i in range(first, first + count):
        length = 2 + (i * 5) % 16
        config = DecodingConfig.model_validate(
            {
                "top_p": 0.9 if i % 2 else 1.0,
                "do_sample": bool(i % 2),
                "min_new_tokens": length,
                "max_new_tokens": length,
                **update,
            }
        )
        requests.append(GenerationRequest(i, PROMPTS[i % len(PROMPTS)], config, seed=50 + i))
    return requests


def _alone(loaded: LoadedModel, requests: list[GenerationRequest]) -> list[tuple[int, ...]]:
    return [generations(Engine(loaded, batch_size=1), [r])[0].token_ids for r in requests]


def _made(steps: list[DecodeStep]) -> int:
    return sum(s.tokens for s in steps)


def _tokens(generations: list[Generation]) -> int:
    return sum(g.tokens_generated for g in generations)


def test_the_next_calls_articles_start_in_this_calls_tail(tiny_model: LoadedModel) -> None:
    first, second = _mixed(0, 9), _mixed(9, 9)
    engine = Engine(tiny_model, batch_size=3)
    steps_first: list[DecodeStep] = []
    steps_second: list[DecodeStep] = []
    a = generations(engine, first, on_step=steps_first.append, ahead=second)
    b = generations(engine, second, on_step=steps_second.append)
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)
    # Some of the second call's tokens were made in the first call's steps.
    carried = _made(steps_first) - _tokens(a)
    assert carried > 0
    assert _made(steps_second) == _tokens(b) - carried
    # Two calls as one queue: fewer steps than the same calls one after the other.
    apart: list[DecodeStep] = []
    fresh = Engine(tiny_model, batch_size=3)
    generations(fresh, first, on_step=apart.append)
    generations(fresh, second, on_step=apart.append)
    assert len(steps_first) + len(steps_second) < len(apart)


def test_a_chain_of_calls_is_one_queue(tiny_model: LoadedModel) -> None:
    calls = [_mixed(6 * k, 6) for k in range(4)]
    engine = Engine(tiny_model, batch_size=2)
    out: list[Generation] = []
    for k, requests in enumerate(calls):
        ahead = calls[k + 1] if k + 1 < len(calls) else []
        out += generations(engine, requests, ahead=ahead)
    assert [g.token_ids for g in out] == _alone(tiny_model, [r for c in calls for r in c])


def test_a_call_with_other_requests_starts_afresh(tiny_model: LoadedModel) -> None:
    first, second = _mixed(0, 8), _mixed(8, 8)
    engine = Engine(tiny_model, batch_size=3)
    generations(engine, first, ahead=second)
    # Not the requests promised: one is missing, and another has a new seed.
    changed = [*second[:-2], replace(second[-2], seed=999)]
    steps: list[DecodeStep] = []
    b = generations(engine, changed, on_step=steps.append)
    assert [g.token_ids for g in b] == _alone(tiny_model, changed)
    assert _made(steps) == _tokens(b)  # every token made here: nothing went on


def test_the_next_call_may_need_longer_rows_and_step_noise(tiny_model: LoadedModel) -> None:
    """The next call's articles run longer, and add noise at every step: the rows' per-step
    state grows for them without changing what runs beside them."""
    first = _mixed(0, 6, do_sample=False, top_p=1.0)
    noisy = {"noise_sigma": 0.4, "noise_every_step": True, "do_sample": True, "top_k": 30}
    second = [
        replace(r, config=r.config.model_copy(update={"min_new_tokens": 30, "max_new_tokens": 30}))
        for r in _mixed(6, 6, **noisy)
    ]
    engine = Engine(tiny_model, batch_size=3)
    steps: list[DecodeStep] = []
    a = generations(engine, first, on_step=steps.append, ahead=second)
    assert _made(steps) > _tokens(a)  # the longer, noised articles did start here
    b = generations(engine, second)
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)


def test_a_stop_drops_what_was_started_ahead(tiny_model: LoadedModel) -> None:
    # Two short articles and a long one: the short ones' rows take the next call's articles.
    lengths = (2, 2, 30)
    first = [
        replace(r, config=r.config.model_copy(update={"min_new_tokens": n, "max_new_tokens": n}))
        for r, n in zip(_mixed(0, 3), lengths, strict=True)
    ]
    second = _mixed(3, 6)
    engine = Engine(tiny_model, batch_size=3)
    seen: list[DecodeStep] = []
    a = engine.generate(first, on_step=seen.append, stop=lambda: len(seen) >= 10, ahead=second)
    assert [isinstance(o, Generation) for o in a] == [True, True, False]  # the long one cut
    assert _made(seen) > 2 + 2 + 10  # the next call's articles had started
    steps: list[DecodeStep] = []
    b = generations(engine, second, on_step=steps.append)
    assert [g.token_ids for g in b] == _alone(tiny_model, second)
    assert _made(steps) == _tokens(b)  # started afresh


def test_out_of_memory_runs_again_without_carrying(tiny_model: LoadedModel) -> None:
    limited = replace(tiny_model, model=OutOfMemoryAbove(tiny_model.model, limit=2))
    first, second = _mixed(0, 5), _mixed(5, 5)
    engine = Engine(limited, batch_size=3)
    a = generations(engine, first, ahead=second)
    steps: list[DecodeStep] = []
    b = generations(engine, second, on_step=steps.append)
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)
    assert _made(steps) == _tokens(b)  # the retry after the failure carried nothing
    assert {g.batch_size for g in a} == {1}


@pytest.mark.parametrize("beams", [True, False])
def test_requests_of_another_group_wait_for_their_own_call(
    tiny_model: LoadedModel, beams: bool
) -> None:
    """Only requests of the queue's own scheduling group join it: beam search, or another
    n-gram setting, runs in its own call."""
    first = _mixed(0, 4)
    other = (
        {"num_beams": 2, "do_sample": False, "top_p": 1.0} if beams else {"no_repeat_ngram_size": 2}
    )
    second = _mixed(4, 4, **other)
    engine = Engine(tiny_model, batch_size=2)
    steps: list[DecodeStep] = []
    a = generations(engine, first, on_step=steps.append, ahead=second)
    assert _made(steps) == _tokens(a)
    b = generations(engine, second)
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)


@dataclass
class _Run:
    """A run of eight unseeded prompts of different lengths, its first two batches claimed."""

    settings: Settings
    db: Database
    params: GenerateParams
    job_id: int
    first: list[int]
    second: list[int]


@pytest.fixture
def started_run(
    sqlite_url: str, tiny_model_dir: Path, catalog: PresetCatalog, tmp_path: Path
) -> Iterator[_Run]:
    lengths = [3 + 4 * ((i * 3) % 8) for i in range(8)]
    with seeded_run(lengths, sqlite_url, tiny_model_dir, catalog, tmp_path, depth=2) as (
        settings,
        db,
    ):
        params = GenerateParams(batch_size=2, preset="nucleus")  # no seed: fresh ones
        job_id = open_job(settings, params)
        start_run(settings, job_id, params)
        first = claim_batch(settings, job_id, params)
        second = claim_batch(settings, job_id, params, claimed=len(first), number=2)
        assert (len(first), len(second)) == (4, 4)
        try:
            yield _Run(settings, db, params, job_id, first, second)
        finally:
            # A test that failed before closing its run: close it, or what the process keeps
            # per job id (its upcoming batch, its progress) meets the next test's job 1.
            with db.session(write=False) as session:
                running = session.get_one(Job, job_id).status is JobStatus.RUNNING
            if running:
                finish_run(settings, job_id, params, cancelled=True)


def test_a_runs_next_batch_goes_on_with_the_seeds_it_started_with(
    started_run: _Run, tiny_model_dir: Path
) -> None:
    """A run hands its next claimed batch to the generating one. Unseeded articles draw a
    fresh seed when their inputs are built: the stored seed must be the one the article was
    generated with, whichever call started it."""
    run = started_run
    one = generate_batch(run.settings, run.job_id, 1, run.first, run.params, ahead=run.second)
    made_before = progress_for(run.job_id).snapshot().tokens
    two = generate_batch(run.settings, run.job_id, 2, run.second, run.params)
    made_in_second = progress_for(run.job_id).snapshot().tokens - made_before
    written = [*finish_batch(run.settings, one).written, *finish_batch(run.settings, two).written]
    finish_run(run.settings, run.job_id, run.params)
    assert len(written) == 8
    with run.db.session(write=False) as session:
        articles = list(session.scalars(select(Article)))
    later = [a for a in articles if a.prompt_id in run.second]
    assert made_in_second < sum(a.tokens_generated for a in later)  # started in the first
    loaded = load_model(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"))
    for article in articles:
        fields = DecodingConfig.model_fields
        own = {k: v for k, v in article.decoding.items() if v != fields[k].default}
        config = DecodingConfig.model_validate(own)  # as stored, without the defaults
        assert article.prompt_text is not None
        request = GenerationRequest(article.id, article.prompt_text, config, article.seed)
        alone = generations(Engine(loaded, batch_size=1), [request])[0]
        # Stored as the database keeps text: NUL (which PostgreSQL refuses) as U+FFFD.
        assert alone.text.replace("\x00", "\ufffd") == article.raw_text


def test_a_run_that_ends_frees_the_rows_its_next_batch_started(
    started_run: _Run, tiny_model_dir: Path
) -> None:
    """A run stopped between batches: the engine, kept by the process for its next run,
    must not keep the rows the never-generated batch started (a GPU's cache)."""
    run = started_run
    generate_batch(run.settings, run.job_id, 1, run.first, run.params, ahead=run.second)
    loaded = load_model(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"))
    engine = context_for(run.settings).writer(loaded, 2).engine
    assert engine._carried is not None  # (private: observed only) kept for batch 2
    result = finish_run(run.settings, run.job_id, run.params, cancelled=True)
    assert engine._carried is None
    assert result.status == "cancelled"
    with run.db.session(write=False) as session:
        statuses = Counter(p.status for p in session.scalars(select(Prompt)))
    assert statuses == {PromptStatus.PENDING: 8}  # nothing recorded: all given back


@pytest.mark.parametrize("budget", [None, 400])
def test_rows_grow_for_the_next_calls_requests(tiny_model: LoadedModel, budget: int | None) -> None:
    """A call of two requests runs in two rows; the next call's six, no wider, join and grow
    the batch to the four rows asked for (which a budget of 400 positions holds)."""
    first = _mixed(0, 2)
    second = [
        replace(first[i % 2], key=2 + i, seed=80 + i, config=first[i % 2].config) for i in range(6)
    ]
    engine = Engine(tiny_model, batch_size=4, cache_tokens=budget)
    steps: list[DecodeStep] = []
    a = generations(engine, first, on_step=steps.append, ahead=second)
    b = generations(engine, second, on_step=steps.append)
    assert max(s.tokens for s in steps) == 4
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)


def _short_then_long(first: int) -> list[GenerationRequest]:
    """Two articles of 2 tokens and one of 30: the short ones' rows free up at once."""
    return [
        replace(r, config=r.config.model_copy(update={"min_new_tokens": n, "max_new_tokens": n}))
        for r, n in zip(_mixed(first, 3), (2, 2, 30), strict=True)
    ]


def test_progress_counts_each_calls_own_articles(tiny_model: LoadedModel) -> None:
    """The next call's articles that start (and end) in this call's tail make tokens here,
    but count as finished in their own call: a progress bar never runs backwards."""
    first, second = _short_then_long(0), _mixed(3, 6)
    engine = Engine(tiny_model, batch_size=3)
    one: list[DecodeStep] = []
    two: list[DecodeStep] = []
    a = generations(engine, first, on_step=one.append, ahead=second)
    b = generations(engine, second, on_step=two.append)
    assert _made(one) > _tokens(a)  # the next call's articles ran here
    assert _made(one) + _made(two) == _tokens(a) + _tokens(b)  # every token counted once
    assert (sum(s.finished for s in one), sum(s.finished for s in two)) == (3, 6)
    assert two[0].tokens == 0  # first: those of its articles that ended in the last call
    assert two[0].finished > 0
    # Once the two short articles have ended, only the long one (30 tokens) is the first
    # call's: its share of its budget is the running fraction, whatever else runs beside it.
    for made, step in enumerate(one[2:-1], start=3):
        assert step.running_fraction == pytest.approx(made / 30)


def test_a_queue_that_does_not_go_on_is_freed_before_the_next_runs(
    tiny_model: LoadedModel,
) -> None:
    first, second = _short_then_long(0), _mixed(3, 6)
    engine = Engine(tiny_model, batch_size=3)
    generations(engine, first, ahead=second)
    carried = engine._carried  # what the engine keeps between calls (private: observed only)
    assert carried is not None
    stale = weakref.ref(carried.decoder)
    del carried
    alive: list[bool] = []
    other = second[1:]  # not the requests promised
    generations(engine, other, on_step=lambda step: alive.append(stale() is not None))
    assert alive
    assert not any(alive)


def test_a_queue_that_runs_out_of_memory_going_on_runs_again_afresh(
    tiny_model: LoadedModel,
) -> None:
    limited = OutOfMemoryAbove(tiny_model.model, limit=3)
    engine = Engine(replace(tiny_model, model=limited), batch_size=3)
    first, second = _short_then_long(0), _mixed(3, 6)
    a = generations(engine, first, ahead=second)
    assert limited.failures == 0
    assert engine._carried is not None
    stale = weakref.ref(engine._carried.decoder)
    limited.limit = 1  # the hardware has less room now: the rows that go on do not fit
    alive: list[bool] = []
    b = generations(engine, second, on_step=lambda step: alive.append(stale() is not None))
    assert limited.failures >= 1
    # The retry's steps ran with the failed queue freed (its cache is what ran out).
    assert alive[-1] is False
    assert stale() is None
    assert {g.batch_size for g in b} == {1}  # run again, one row at a time
    assert [g.token_ids for g in a + b] == _alone(tiny_model, first + second)


def test_a_queue_goes_on_only_as_the_calls_last_batch(tiny_model: LoadedModel) -> None:
    """The next call holds the promised requests and beam-search ones: the queue that goes
    on runs first and, with the beam batch still to run after it, keeps nothing for the
    call after (its cache would sit beside the beams'). Beams then run, and the queue of
    the call after starts afresh."""
    first, second = _short_then_long(0), _mixed(3, 4)
    beams = _mixed(7, 2, num_beams=2, do_sample=False, top_p=1.0)
    third = _mixed(9, 4)
    engine = Engine(tiny_model, batch_size=3)
    a = generations(engine, first, ahead=second)
    assert engine._carried is not None
    steps: list[DecodeStep] = []
    b = generations(engine, [*second, *beams], on_step=steps.append, ahead=third)
    assert engine._carried is None  # (private: observed only)
    assert _made(steps[:1]) == 0  # it went on: first, what ended in the last call
    made: list[DecodeStep] = []
    c = generations(engine, third, on_step=made.append)
    assert _made(made) == _tokens(c)
    assert [g.token_ids for g in a + b + c] == _alone(tiny_model, first + second + beams + third)
