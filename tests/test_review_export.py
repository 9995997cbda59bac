"""The client's loop through the CLI: generate, list, show, review, regenerate, export."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from articlegen.cli import cli
from articlegen.db import Article, Database, PromptStatus
from articlegen.export import RANDOM_WEIGHTS_NOTE, export_articles, neutralise_formula
from articlegen.generator.templates import Templates
from articlegen.runs import close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

# Topics grow longer row by row: a run batches prompts by length, so article ids follow rows.
CSV = """external_id,topic,variants,x_note
a1,Night trains,2,
a2,+HYPERLINK("http://x.invalid"),1,@SUM(A1)
a3,Bees <script>alert(1)</script>,1,
"""


@pytest.fixture
def run(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> Iterator[Callable[..., Result]]:
    env = {
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    source = tmp_path / "p.csv"
    source.write_text(CSV, encoding="utf-8")
    assert invoke("import", str(source)).exit_code == 0
    yield invoke
    close_contexts()


def test_generate_review_regenerate_export(run: Callable[..., Result], tmp_path: Path) -> None:
    invoke = run
    result = invoke("generate", "--max-new-tokens", "30", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Job 1 completed: 4 of 4 articles written, 0 failed, in ")
    assert result.stdout.endswith("Next: articlegen articles list --job 1\n")

    listed = json.loads(invoke("articles", "list", "--format", "json").stdout)
    assert [(a["external_id"], a["variant"], a["version"]) for a in listed] == [
        ("a1", 1, 1), ("a1", 2, 1), ("a2", 1, 1), ("a3", 1, 1)
    ]  # fmt: skip
    required = {
        "id", "prompt_id", "external_id", "topic", "title", "body", "markdown", "html",
        "review_status", "seed", "model", "model_revision", "decoding", "metrics",
        "tokens_generated", "finish_reason", "job_id", "variant", "version", "created_at",
    }  # fmt: skip
    assert required <= set(listed[0])
    # `models init`'s random weights wrote them: every one says so.
    assert {(a["model_kind"], a["warning"]) for a in listed} == {("random", RANDOM_WEIGHTS_NOTE)}
    table = invoke("articles", "list").stdout.splitlines()
    assert table[0].split()[-1] == "warning"
    assert all(line.endswith(RANDOM_WEIGHTS_NOTE) for line in table[1:])
    read = invoke("articles", "show", "1").stdout
    assert read.startswith(f"WARNING: {RANDOM_WEIGHTS_NOTE}\n\n# ")
    assert "model_kind         random" in read
    shown = json.loads(invoke("articles", "show", "1", "--format", "json").stdout)
    assert shown == listed[0]
    job = json.loads(invoke("jobs", "show", "1", "--format", "json").stdout)
    assert (job["status"], job["total"], job["done"]) == ("completed", 4, 4)

    assert invoke("review", "approve", "1", "3", "--note", "ok").stdout == "Approved: 1, 3.\n"
    rejected = invoke("review", "reject", "2", "--reason", "off topic")
    assert rejected.stdout == "Rejected: 2.\n"
    missing = invoke("review", "approve", "99")
    assert (missing.exit_code, missing.stderr) == (
        1, "Error: no article 99: `articlegen articles list` shows the articles there are\n"
    )  # fmt: skip

    again = invoke("review", "regenerate", "2", "--preset", "precise", "--set", "temperature=0.6")
    assert again.exit_code == 0
    rerun = invoke("generate", "--max-new-tokens", "30")
    assert "1 of 1 articles written" in rerun.stdout
    latest = json.loads(invoke("articles", "list", "--job", "2", "--format", "json").stdout)
    assert [(a["external_id"], a["variant"], a["version"]) for a in latest] == [("a1", 2, 2)]
    assert latest[0]["decoding"]["temperature"] == 0.6
    assert latest[0]["model_kind"] == "random"  # a new version records its model's kind too
    assert len(json.loads(invoke("articles", "list", "--format", "json").stdout)) == 5
    nothing = invoke("generate")
    assert nothing.stdout.startswith(
        "Nothing to generate: no pending prompts (0 pending, 3 done, 0 failed)."
    )
    tagged = invoke("generate", "--tag", "nope")
    assert tagged.stdout.startswith("Nothing to generate: no pending prompts tagged nope (")

    out = tmp_path / "out"
    assert invoke("export", "--format", "csv", "--out", str(out / "a.csv")).exit_code == 0
    with (out / "a.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["1", "3"]  # approved only, by default
    assert rows[1]["topic"] == '\'+HYPERLINK("http://x.invalid")'  # neutralised
    assert {r["model_kind"] for r in rows} == {"random"}

    html = invoke("export", "--status", "all", "--format", "html", "--out", str(out / "html"))
    assert html.stdout == f"Exported 5 article(s) to {out / 'html'} (6 file(s)).\n"
    index = (out / "html" / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;" in index
    assert "<script>" not in index
    page = next((out / "html").glob("00004-*.html")).read_text(encoding="utf-8")
    assert "Bees &lt;script&gt;" in page
    warning = f"WARNING: {RANDOM_WEIGHTS_NOTE}"
    assert page.count(warning) == 1
    assert page.index("<body>") < page.index(warning) < page.index("<h1>")
    assert index.count(warning) == 5
    md = invoke("export", "--status", "all", "--format", "md", "--out", str(out / "md"))
    assert md.exit_code == 0
    md_index = (out / "md" / "index.md").read_text(encoding="utf-8")
    assert md_index.startswith("# Articles")
    assert md_index.count(warning) == 5
    for file in (out / "md").glob("0000*.md"):
        assert file.read_text(encoding="utf-8").startswith(f"> **{warning}.**\n\n# ")
    jsonl = invoke(
        "export", "--status", "rejected", "--format", "jsonl", "--out", str(out / "r.jsonl")
    )
    assert jsonl.exit_code == 0
    (line,) = (out / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["reviewer_note"] == "off topic"
    assert json.loads(line)["model_kind"] == "random"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-x", "'-x"), ("@A1", "'@A1"), ("\tx", "'\tx"),
     ("plain", "plain"), (3, 3)],
)  # fmt: skip
def test_neutralise_formula(value: object, expected: object) -> None:
    assert neutralise_formula(value) == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "md", "html"])
def test_only_articles_of_random_weights_carry_the_warning(fmt: str, tmp_path: Path) -> None:
    def record(article_id: int, kind: str | None, warning: str | None) -> dict[str, object]:
        title = f"Title {article_id}"
        return {
            "id": article_id, "title": title, "body": "Text.", "words": 1, "flags": [],
            "review_status": "approved", "model_kind": kind, "warning": warning,
            "markdown": f"# {title}\n\nText.\n",
            "html": f"<!doctype html>\n<html><body>\n<h1>{title}</h1>\n</body></html>\n",
        }  # fmt: skip

    records = [record(1, "fine_tuned", None), record(2, "random", RANDOM_WEIGHTS_NOTE)]
    records.append(record(3, None, None))  # older than the kinds
    out = tmp_path / f"out.{fmt}" if fmt in ("csv", "jsonl") else tmp_path / fmt
    files = export_articles(records, fmt, out, Templates()).written  # type: ignore[arg-type]
    text = {f.name[:5]: f.read_text(encoding="utf-8") for f in files}
    if fmt == "csv":
        rows = list(csv.DictReader(text["out.c"].splitlines()))
        assert [r["model_kind"] for r in rows] == ["fine_tuned", "random", ""]
        return
    if fmt == "jsonl":
        lines = [json.loads(line) for line in text["out.j"].splitlines()]
        assert [r["model_kind"] for r in lines] == ["fine_tuned", "random", None]
        return
    warning = f"WARNING: {RANDOM_WEIGHTS_NOTE}"
    assert [warning in text[f"0000{i}"] for i in (1, 2, 3)] == [False, True, False]
    assert text["index"].count(warning) == 1
    assert text["index"].index("Title 2") < text["index"].index(warning)


def test_generate_checks_model_and_template_before_running(run: Callable[..., Result]) -> None:
    invoke = run
    missing = invoke("generate", "--model", "/no/such/model")
    assert (missing.exit_code, missing.stdout) == (1, "")
    assert missing.stderr == (
        "Error: model directory /no/such/model does not exist: check ARTICLEGEN_MODEL, or "
        "create one with `articlegen models init /no/such/model`\n"
    )
    template = invoke("generate", "--template", "newsletter")
    assert template.exit_code == 1
    assert template.stderr.startswith(
        "Error: template newsletter: no newsletter.md.j2 or newsletter.html.j2 in the templates"
    )
    listed = invoke("jobs", "list", "--format", "json")
    assert listed.stdout.strip() == "[]"  # nothing was started


def test_regenerate_checks_against_the_prompts_own_settings(
    run: Callable[..., Result], sqlite_url: str
) -> None:
    invoke = run
    assert invoke("generate", "--max-new-tokens", "20").exit_code == 0
    db = Database.open(sqlite_url)
    with db.session() as session:
        (article,) = [a for a in session.scalars(select(Article)) if a.variant == 1][:1]
        article.prompt.decoding = {"min_new_tokens": 100}
        article_id = article.id
    bad = invoke("review", "regenerate", str(article_id), "--set", "max_new_tokens=50")
    assert bad.exit_code == 1
    assert bad.stderr.startswith(
        f"Error: article {article_id}: decoding settings (preset `nucleus`)"
    )
    assert "`min_new_tokens` (100) exceeds `max_new_tokens` (50)" in bad.stderr
    with db.session() as session:
        session.get_one(Article, article_id).prompt.status = PromptStatus.CLAIMED
    busy = invoke("review", "regenerate", str(article_id))
    assert busy.stderr == (
        f"Error: article {article_id}: its prompt is being generated by a running job; "
        "regenerate it once the job has finished (`articlegen jobs list`)\n"
    )
    db.close()


def test_drop_folder_rejects_stay_out_of_the_next_import(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from articlegen.flows.import_prompts import import_prompts

    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", sqlite_url)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "mixed.csv").write_text("topic,top_p\nGood,0.5\nBad,1.5\n", encoding="utf-8")
    (result,) = import_prompts(str(drop), skip_invalid=True)
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert (drop / "rejected" / "mixed.rejects.csv").exists()
    assert import_prompts(str(drop), skip_invalid=True) == []  # the rejects are not re-read
    close_contexts()


def test_generate_shows_each_decoding_warning_once(
    run: Callable[..., Result], tmp_path: Path, sqlite_url: str
) -> None:
    invoke = run
    source = tmp_path / "greedy.csv"
    source.write_text(
        "topic,preset,top_p\nGreedy one,greedy,0.5\nGreedy two,greedy,0.5\n", encoding="utf-8"
    )
    assert invoke("import", str(source)).exit_code == 0
    result = invoke("generate", "--max-new-tokens", "4", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    warning = (
        "Warning: `top_p` is set but decoding is greedy or beam search (`do_sample` is false), "
        "so it is ignored: use a sampling preset such as `nucleus`, or drop `top_p`\n"
    )
    # Two prompts in two batches say the same: the user reads it once.
    assert result.stderr.count(warning) == 1, result.stderr
    # The run writes the greedy prompts all the same.
    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        greedy = [a for a in session.scalars(select(Article)) if a.prompt.preset == "greedy"]
    db.close()
    assert len(greedy) == 2
    assert {a.decoding["do_sample"] for a in greedy} == {False}


def test_generate_with_nothing_to_do_answers_without_prefect_or_a_model(
    sqlite_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "p.csv"
    source.write_text("topic,tags\nNight trains,travel\n", encoding="utf-8")
    env = {
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        # Either would fail the command if it were used: no model there, no server here.
        "ARTICLEGEN_MODEL": str(tmp_path / "no-such-model"),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    assert invoke("import", str(source)).exit_code == 0
    nothing = invoke("generate", "--tag", "food")  # one prompt pending, but not tagged food
    close_contexts()
    assert (nothing.exit_code, nothing.stderr) == (0, "")
    assert nothing.stdout == (
        "Nothing to generate: no pending prompts tagged food (1 pending, 0 done, 0 failed). "
        "Import more with `articlegen import FILE`.\n"
    )
    assert invoke("jobs", "list", "--format", "json").stdout.strip() == "[]"  # no job recorded
    # With work to do, the same command goes on: to the server first (a quick call, before a
    # model that may take minutes to load), and says it does not answer.
    work = invoke("generate", "--tag", "travel")
    close_contexts()
    assert work.exit_code == 1
    assert work.stderr.startswith("Error: the Prefect API at http://127.0.0.1:9/api does not")
