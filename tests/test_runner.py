"""A generation run's steps against real databases and a real tiny model, without Prefect."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from articlegen.core.safe_text import escape_markdown_html, strip_controls
from articlegen.core.settings import Settings
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.models import ModelKind, RegisteredModel
from articlegen.export import RANDOM_WEIGHTS_NOTE
from articlegen.generator import PresetCatalog
from articlegen.generator.loading import RANDOM_WEIGHTS_FILE
from articlegen.importing import import_prompts_csv
from articlegen.runs import (
    GenerateParams,
    RunResult,
    claim_batch,
    close_contexts,
    finish_run,
    open_job,
    plan_run,
    start_run,
    write_batch,
)

from .conftest import CliHarness

# 12 prompts of mixed length, with variants, presets and overrides; one far too long.
PROMPTS_CSV = """external_id,topic,prompt,preset,variants,max_new_tokens,seed,x_audience
p01,Night trains,,,2,,,commuters
p02,Sourdough in winter,A starter is a small ecosystem of yeast and bacteria. In winter,,1,24,,
p03,Heat pumps,,greedy,1,,,
p04,Repair cafes,Repair cafes are,beam,1,16,,
p05,Podcasts,,creative,3,,5,
p06,Bookshops,,precise,1,,,
p07,Beekeeping,Bees,noisy_greedy,2,,11,
p08,Emergency funds,,top_k,1,20,,
p09,Handwriting,,,1,,,students
p10,Walking meetings,Walk,,1,,,
p11,Teen sleep,,nucleus,1,30,,
p12,Too long,"{long}",,1,,,
"""


@pytest.fixture
def settings(database_url: str, tiny_model_dir: Path) -> Iterator[Settings]:
    yield Settings(database_url=database_url, model=str(tiny_model_dir), device="cpu")
    close_contexts()


@pytest.fixture
def imported(settings: Settings, catalog: PresetCatalog, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "prompts.csv"
    path.write_text(PROMPTS_CSV.replace("{long}", "word " * 600), encoding="utf-8")
    db = Database.open(settings.database_url)
    assert import_prompts_csv(db, path, catalog).inserted == 12
    yield db
    db.close()


def _run(settings: Settings, params: GenerateParams) -> RunResult:
    job_id = open_job(settings, params)
    start_run(settings, job_id, params)
    claimed = 0
    while batch := claim_batch(settings, job_id, params, claimed):
        claimed += len(batch)
        write_batch(settings, job_id, batch, params)
    return finish_run(settings, job_id, params)


def test_a_run_writes_every_article_with_its_metadata(
    settings: Settings, imported: Database
) -> None:
    params = GenerateParams(batch_size=4, overrides={"max_new_tokens": 40})
    result = _run(settings, params)
    assert result.status == JobStatus.COMPLETED_WITH_ERRORS.value
    assert (result.total, result.done, result.failed) == (16, 15, 1)

    with imported.session(write=False) as session:
        prompts = {p.external_id: p for p in session.scalars(select(Prompt))}
        articles = list(session.scalars(select(Article)))
        job = session.scalars(select(Job)).one()
    assert prompts["p12"].status is PromptStatus.FAILED
    assert "over the model's context" in (prompts["p12"].last_error or "")
    assert {p.status for k, p in prompts.items() if k != "p12"} == {PromptStatus.DONE}
    by_prompt: dict[str, list[Article]] = {}
    for article in articles:
        by_prompt.setdefault(prompts_by_id(prompts)[article.prompt_id], []).append(article)
    assert {k: len(v) for k, v in by_prompt.items()} == {
        "p01": 2, "p02": 1, "p03": 1, "p04": 1, "p05": 3, "p06": 1, "p07": 2, "p08": 1,
        "p09": 1, "p10": 1, "p11": 1,
    }  # fmt: skip
    for article in articles:
        assert article.job_id == job.id
        assert article.version == 1
        assert article.title
        assert article.raw_text is not None
        # Random weights can write `<`, `&` or a control character: escaped, dropped.
        title = escape_markdown_html(strip_controls(article.title))
        assert article.rendered["markdown"].startswith(f"# {title}")
        assert article.rendered["html"].startswith("<!doctype html>")
        assert article.model_name == settings.model
        assert article.model_kind is ModelKind.RANDOM  # `models init`'s weights: noise
        assert (article.model_revision or "").startswith("sha256:")
        assert article.template_name == "article"
        assert article.prompt_tokens > 0
        assert 0 < article.tokens_generated <= 40  # the run's override beats the prompt's
        assert article.finish_reason in ("eos", "length", "stop_string")
        assert article.decoding["max_new_tokens"] == 40
        assert set(article.metrics) >= {"perplexity", "word_count", "distinct_2", "flags"}
        assert article.generation_seconds > 0
    variants = sorted(a.variant for a in by_prompt["p05"])
    assert variants == [1, 2, 3]
    p05 = by_prompt["p05"]
    assert p05[0].decoding["temperature"] == 1.1  # preset creative
    assert len({a.seed for a in p05}) == 3  # seed 5 is a base: one seed per variant


def prompts_by_id(prompts: dict[str | None, Prompt]) -> dict[int, str]:
    return {p.id: k or "" for k, p in prompts.items()}


def test_a_second_run_finds_nothing_to_do(settings: Settings, imported: Database) -> None:
    params = GenerateParams(batch_size=8, overrides={"max_new_tokens": 8})
    _run(settings, params)
    again = _run(settings, params)
    assert (again.total, again.done, again.failed) == (0, 0, 0)
    assert again.status == JobStatus.COMPLETED.value


def test_limit_tags_and_dry_run(settings: Settings, imported: Database) -> None:
    dry = GenerateParams(limit=3, batch_size=8, dry_run=True)
    plan = plan_run(settings, dry)
    assert (plan.prompts, plan.articles) == (3, 2 + 1 + 1)  # p01 (2), p02, p03 by id order
    with imported.session(write=False) as session:
        assert {p.status for p in session.scalars(select(Prompt))} == {PromptStatus.PENDING}


def test_bad_overrides_are_rejected_when_the_run_is_made() -> None:
    with pytest.raises(ValueError, match=r"`temperature`: input should be greater than 0"):
        GenerateParams(overrides={"temperature": -1})
    with pytest.raises(ValueError, match=r"`temprature`: unknown setting"):
        GenerateParams(overrides={"temprature": 1})


def test_tags_and_fifo_order(settings: Settings, imported: Database) -> None:
    with imported.session() as session:
        for prompt in session.scalars(select(Prompt)):
            prompt.tags = ["rail"] if prompt.external_id in ("p07", "p03") else ["other"]
    params = GenerateParams(tags=["rail"], order="fifo", batch_size=8, dry_run=True)
    plan = plan_run(settings, params)
    with imported.session(write=False) as session:
        ids = {p.id: str(p.external_id) for p in session.scalars(select(Prompt))}
    assert sorted(ids[i] for batch in plan.batches for i in batch) == ["p03", "p07"]
    oldest = GenerateParams(limit=2, order="fifo", batch_size=8, dry_run=True)
    plan = plan_run(settings, oldest)
    assert sorted(ids[i] for batch in plan.batches for i in batch) == ["p01", "p02"]
    by_priority = GenerateParams(limit=2, batch_size=8, dry_run=True)
    plan = plan_run(settings, by_priority)
    assert plan.prompts == 2


def test_batches_group_similar_lengths_within_a_priority(
    settings: Settings, imported: Database
) -> None:
    with imported.session() as session:
        prompts = list(session.scalars(select(Prompt)))
        for prompt in prompts:
            prompt.priority = 5 if prompt.external_id in ("p12", "p02") else 0
        length = {p.id: len(p.prompt or p.topic) for p in prompts}
        urgent = {p.id for p in prompts if p.priority == 5}
    params = GenerateParams(batch_size=3, variants=1, dry_run=True)
    plan = plan_run(settings, params)
    order = [i for batch in plan.batches for i in batch]
    assert set(order[:2]) == urgent  # priority first, however long
    rest = [length[i] for i in order[2:]]
    assert rest == sorted(rest)  # then shortest to longest: batches of similar length
    assert [len(b) for b in plan.batches] == [3, 3, 3, 3]


def test_run_overrides_are_checked_one_by_one() -> None:
    # Valid for prompts on the beam preset: relations wait for each prompt's own preset.
    overrides = GenerateParams(overrides={"num_beams": "4"}).overrides
    assert overrides.settings() == {"num_beams": 4}
    overrides = GenerateParams(overrides={"min_new_tokens": 300}).overrides
    assert overrides.settings() == {"min_new_tokens": 300}


def test_a_run_keeps_the_presets_it_started_with_and_records_its_model(
    database_url: str, tiny_model_dir: Path, catalog: PresetCatalog, tmp_path: Path
) -> None:
    """Presets are read once per process: editing the file mid-run changes no later batch."""
    presets = tmp_path / "presets.toml"
    presets.write_text("[house]\ntemperature = 0.6\n", encoding="utf-8")
    settings = Settings(
        database_url=database_url, model=str(tiny_model_dir), device="cpu", presets_file=presets
    )
    source = tmp_path / "four.csv"
    source.write_text("topic\nAlpha\nBravo\nCharlie\nDelta\n", encoding="utf-8")
    db = Database.open(database_url)
    try:
        assert import_prompts_csv(db, source, catalog).inserted == 4
        params = GenerateParams(batch_size=2, preset="house", overrides={"max_new_tokens": 6})
        job_id = open_job(settings, params)
        start_run(settings, job_id, params)
        first = claim_batch(settings, job_id, params)
        assert len(first) == 2
        write_batch(settings, job_id, first, params)
        presets.write_text("[house]\ntemperature = 1.7\n", encoding="utf-8")
        second = claim_batch(settings, job_id, params, claimed=2)
        assert len(second) == 2
        write_batch(settings, job_id, second, params)
        finish_run(settings, job_id, params)
        with db.session(write=False) as session:
            articles = list(session.scalars(select(Article)))
            job = session.get_one(Job, job_id)
        assert len(articles) == 4
        assert {a.decoding["temperature"] for a in articles} == {0.6}
        assert job.model == str(tiny_model_dir)
        assert job.model_revision is not None
        assert job.model_revision.startswith("sha256:")
        assert {a.model_revision for a in articles} == {job.model_revision}
    finally:
        db.close()
        close_contexts()


def test_random_weights_are_recorded_and_outlive_their_registry_row(
    database_url: str,
    tiny_model_dir: Path,
    catalog: PresetCatalog,
    tmp_path: Path,
    run_cli: CliHarness,
) -> None:
    """`models init`'s weights write articles of kind `random`, which they keep when the model
    leaves the registry; the same weights without its file are a plain directory, unmarked."""
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / RANDOM_WEIGHTS_FILE).unlink()
    source = tmp_path / "four.csv"
    source.write_text("topic\nAlpha\nBravo\nCharlie\nDelta\n", encoding="utf-8")
    db = Database.open(database_url)
    try:
        assert import_prompts_csv(db, source, catalog).inserted == 4
        params = GenerateParams(batch_size=2, limit=2, overrides={"max_new_tokens": 6})
        for model in (tiny_model_dir, plain):
            settings = Settings(database_url=database_url, model=str(model), device="cpu")
            assert _run(settings, params).done == 2
        with db.session(write=False) as session:
            rows = {m.source: m.kind for m in session.scalars(select(RegisteredModel))}
            articles = session.scalars(select(Article).order_by(Article.id))
            kinds = [(a.model_name, a.model_kind) for a in articles]
        assert rows == {str(tiny_model_dir): ModelKind.RANDOM, str(plain): ModelKind.LOCAL}
        assert sorted(kinds, key=str) == sorted(
            2 * [(str(tiny_model_dir), ModelKind.RANDOM)] + 2 * [(str(plain), ModelKind.LOCAL)],
            key=str,
        )

        # The table warns on the rows of random weights, and only on them.
        table = run_cli("articles", "list").stdout.splitlines()
        assert table[0].split()[-1] == "warning"
        assert [line.endswith(RANDOM_WEIGHTS_NOTE) for line in table[1:]] == [
            kind is ModelKind.RANDOM for _, kind in kinds
        ]

        removed = run_cli("models", "rm", str(tiny_model_dir), "--yes")
        assert removed.exit_code == 0, removed.output
        assert removed.stdout.endswith(
            "the 2 articles it wrote keep its name, revision and kind.\n"
        )
        with db.session(write=False) as session:
            kept = [(a.model_id, a.model_kind) for a in session.scalars(select(Article))]
        assert [k for i, k in kept if i is None] == [ModelKind.RANDOM, ModelKind.RANDOM]
        listed = json.loads(run_cli("articles", "list", "--format", "json").stdout)
        assert sorted((a["model_kind"], a["warning"]) for a in listed) == [
            ("local", None), ("local", None),
            ("random", RANDOM_WEIGHTS_NOTE), ("random", RANDOM_WEIGHTS_NOTE),
        ]  # fmt: skip
    finally:
        db.close()
        close_contexts()
