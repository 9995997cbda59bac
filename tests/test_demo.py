"""`articlegen demo` offline: the starter model is trained once, registered, and reused."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from articlegen.cli import cli, demo
from articlegen.db import Article, Database, registry
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.runs import close_contexts
from articlegen.training.starter import STARTER_NAME, StarterRecipe, _prose, python_docs

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

# A much shorter training than the demo's: the tiny shape, a few documents, one epoch.
SHORT = StarterRecipe(
    size="tiny", documents=12, epochs=1, batch_size=8, block_size=64, memorisation_samples=1
)


def _demo(env: dict[str, str | None]) -> tuple[str, str]:
    result = CliRunner().invoke(cli, ["demo"], env=env, catch_exceptions=False)
    close_contexts()
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_demo_trains_the_starter_model_once_and_reuses_it(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "RECIPE", SHORT)
    env: dict[str, str | None] = {
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": None,
        "ARTICLEGEN_DEVICE": "cpu",
        "ARTICLEGEN_DTYPE": "float32",
    }
    stdout, stderr = _demo(env)
    assert "The Hugging Face Hub can't be reached and gpt2 is not cached" in stderr
    assert f"Training {STARTER_NAME} once (12 documents of Python's documentation" in stderr
    assert f"NOTE: {STARTER_NAME} is a 0.2M-parameter GPT-2 trained from scratch" in stderr
    assert "Expect English-like text about programming, not good articles." in stderr
    assert "Imported prompts.csv: 25 new, 0 unchanged." in stdout
    assert "Job 1 completed: 32 of 32 articles written, 0 failed" in stdout
    assert "32 articles exported to out/ (articles.csv, md/, html/index.html)." in stdout
    assert len(list((tmp_path / "out" / "html").glob("*.html"))) == 33  # 32 + index
    with (tmp_path / "out" / "articles.csv").open(encoding="utf-8", newline="") as handle:
        assert {r["model"] for r in csv.DictReader(handle)} == {STARTER_NAME}

    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        row = registry.get_model(session, STARTER_NAME)
        assert (row.kind, row.status) == (ModelKind.FROM_SCRATCH, ModelStatus.READY)
        assert row.source == str(tmp_path / "models" / STARTER_NAME / "model")
        assert row.corpus["train_documents"] + row.corpus["eval_documents"] == 12
        assert row.hyperparameters["learning_rate"] == SHORT.learning_rate
        # Trained: the kept epoch measures better than the random weights it started from.
        assert row.best_epoch == 1
        first, best = row.epochs[0], row.epochs[1]
        assert best["eval_loss"] < first["eval_loss"]
        linked = session.scalars(select(Article.model_id)).all()
        assert linked == [row.id] * 32
        revision = row.revision

    # Run again: the model is reused, not trained again, and nothing is left to generate.
    stdout, stderr = _demo(env)
    assert "Training" not in stderr
    assert f"NOTE: {STARTER_NAME} is a 0.2M-parameter GPT-2" in stderr
    assert "32 articles exported" in stdout
    with db.session(write=False) as session:
        assert registry.get_model(session, STARTER_NAME).revision == revision

    # Its files deleted by hand: trained again, and the new weights registered.
    shutil.rmtree(tmp_path / "models" / STARTER_NAME)
    _, stderr = _demo(env)
    assert f"is gone: training {STARTER_NAME} again." in stderr
    assert (tmp_path / "models" / STARTER_NAME / "model" / "config.json").is_file()
    with db.session(write=False) as session:
        assert registry.get_model(session, STARTER_NAME).status is ModelStatus.READY


def test_the_starter_corpus_is_prose_from_pythons_documentation() -> None:
    docs = list(python_docs())
    assert docs == list(python_docs())  # the same documents, in the same order, every run
    assert len(docs) > 300
    assert sum(len(d) for d in docs) > 500_000
    assert docs[0].split("\n\n")[0] == "Assert"  # pydoc's first topic, as a title line
    assert any(d.startswith("The json module\n\n") for d in docs)
    for doc in docs:
        title, *paragraphs = doc.split("\n\n")
        assert paragraphs
        assert "\n" not in title
        assert all("\n" not in p and len(p.split()) >= 12 for p in paragraphs)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Return the number of items in the container, counting each one of them once only.", 1),
        ("Too short to teach anything.", 0),
        # Indented: a code example or a literal block.
        ("Example:\n    for item in items: print(item) and then some more code here ok", 0),
        # Identifiers and signatures, not prose.
        ("os.path.join(a, b) __init__(self) sys.argv[1:] x.y() a_b c_d e_f g_h i_j k_l m_n", 0),
        # Two paragraphs, one kept; a paragraph's lines joined.
        ("First paragraph of plain words that says enough to be kept\nacross two lines.\n\n"
         ">>> 1 + 1", 1),
    ],
)  # fmt: skip
def test_only_paragraphs_of_prose_are_kept(text: str, kept: int) -> None:
    paragraphs = list(_prose(text))
    assert len(paragraphs) == kept
    assert all("\n" not in p for p in paragraphs)
