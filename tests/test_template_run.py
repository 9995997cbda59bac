"""A run with user templates, on a real tiny model: a template past its limits fails its article
alone, with the reason; markup in the prompts' fields reaches no export unescaped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from articlegen.core.settings import Settings
from articlegen.db import Database, JobStatus, Prompt, PromptStatus
from articlegen.db.articles import list_articles
from articlegen.export import article_record, export_articles
from articlegen.generator import PresetCatalog
from articlegen.generator.templates import Templates
from articlegen.importing import import_prompts_csv
from articlegen.runs import (
    claim_batch,
    close_contexts,
    finish_run,
    open_job,
    start_run,
    write_batch,
)
from articlegen.runs.params import GenerateParams

from .test_template_safety import EVERY_FIELD

PROMPTS = """external_id,topic,prompt,template,x_audience
slow,Slow,,slow,
huge,Huge,,huge,
marked,<script>alert(1)</script> topic,<img src=x onerror=alert(2)> prompt,every,<script>x</script>
plain,Plain,,,
"""


@pytest.fixture
def settings(database_url: str, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Settings]:
    templates = tmp_path / "templates"
    templates.mkdir()
    never_ends = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    for suffix in (".md.j2", ".html.j2"):
        (templates / f"slow{suffix}").write_text(never_ends, encoding="utf-8")
        (templates / f"huge{suffix}").write_text('{{ title }}\n{{ "x" * 10**9 }}', "utf-8")
        (templates / f"every{suffix}").write_text(EVERY_FIELD, encoding="utf-8")
    yield Settings(
        database_url=database_url,
        model=str(tiny_model_dir),
        device="cpu",
        templates_dir=templates,
        template_seconds=0.5,
    )
    close_contexts()


def test_a_template_past_its_limits_fails_its_article_alone(
    settings: Settings, catalog: PresetCatalog, tmp_path: Path
) -> None:
    source = tmp_path / "prompts.csv"
    source.write_text(PROMPTS, encoding="utf-8")
    db = Database.open(settings.database_url)
    assert import_prompts_csv(db, source, catalog).inserted == 4
    params = GenerateParams(batch_size=4, overrides={"max_new_tokens": 12})
    job_id = open_job(settings, params)
    start_run(settings, job_id, params)
    while batch := claim_batch(settings, job_id, params):
        write_batch(settings, job_id, batch, params)
    result = finish_run(settings, job_id, params)
    assert result.status == JobStatus.COMPLETED_WITH_ERRORS.value
    assert (result.total, result.done, result.failed) == (4, 2, 2)

    with db.session(write=False) as session:
        prompts = {p.external_id: p for p in session.scalars(select(Prompt))}
        records = [article_record(a) for a in list_articles(session)]
    assert {k: p.status for k, p in prompts.items()} == {
        "slow": PromptStatus.FAILED, "huge": PromptStatus.FAILED,
        "marked": PromptStatus.DONE, "plain": PromptStatus.DONE,
    }  # fmt: skip
    assert prompts["slow"].last_error == (
        "template `slow.md.j2`, line 1: rendering took longer than its limit of 0.5 s "
        "(ARTICLEGEN_TEMPLATE_SECONDS): a loop that does not end, or one over far too much"
    )
    assert prompts["huge"].last_error == (
        "template `huge.md.j2`, line 2: a value of 1,000,000,000 characters or items is over "
        "the limit of 10,000,000 (ARTICLEGEN_TEMPLATE_MAX_CHARS)"
    )
    assert sorted(r["external_id"] for r in records) == ["marked", "plain"]

    # The topic, the prompt and the client field carried markup: every export escapes it.
    for fmt in ("md", "html"):
        done = export_articles(records, fmt, tmp_path / fmt, Templates())
        for file in done.written:
            text = file.read_text(encoding="utf-8")
            assert "<script" not in text
            assert "<img" not in text
        marked = next(f for f in done.written if "script" in f.read_text(encoding="utf-8"))
        text = marked.read_text(encoding="utf-8")
        assert "&lt;script&gt;alert(1)&lt;/script&gt; topic" in text
        assert "&lt;img src=x onerror=alert(2)&gt; prompt" in text
        assert "&lt;script&gt;x&lt;/script&gt;" in text
    db.close()
