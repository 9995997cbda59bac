"""`articlegen demo` offline: the starter model is trained once, registered, and reused."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select

from articlegen.cli import cli
from articlegen.core.errors import InputError
from articlegen.core.settings import load_settings
from articlegen.db import Article, Database, registry
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.generator.model_init import SIZES
from articlegen.runs import RunContext, close_contexts, context_for
from articlegen.training.starter import (
    DEMO_RECIPE,
    STARTER_NAME,
    StarterPlan,
    StarterRecipe,
    _prose,
    prepare_starter,
    python_docs,
)
from articlegen.training.store import exclusive

from .test_deployments import _wait_for_deployments
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .training_support import set_env

# A much shorter training than the demo's: the tiny shape, a few documents, one epoch.
SHORT = StarterRecipe(
    size="tiny", documents=12, epochs=1, batch_size=8, block_size=64, memorisation_samples=1
)


def _demo(env: dict[str, str | None]) -> tuple[str, str]:
    # SHORT's shape, documents and epochs, through the demo's hidden options.
    short = ["--starter-size", "tiny", "--starter-documents", "12", "--starter-epochs", "1"]
    result = CliRunner().invoke(cli, ["demo", *short], env=env, catch_exceptions=False)
    close_contexts()
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def _models_of_articles(database: Path) -> dict[str, set[str]]:
    db = Database.open(f"sqlite:///{database}")
    with db.session(write=False) as session:
        found: dict[str, set[str]] = {}
        for article in session.scalars(select(Article)):
            found.setdefault(article.prompt.external_id or "", set()).add(article.model_name)
    db.close()
    return found


def test_demo_then_generate_then_serve_use_the_demo_model_with_no_settings_given(
    prefect_server: None,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh project as a new user has it: no ARTICLEGEN_* variable at all (the database,
    # models and settings file are the defaults, in the working directory), the Hub offline.
    monkeypatch.chdir(tmp_path)
    bare = {k: None for k in os.environ if k.startswith("ARTICLEGEN_")}
    env: dict[str, str | None] = {**bare, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    stdout, stderr = _demo(env)
    assert "The Hugging Face Hub can't be reached and gpt2 is not cached" in stderr
    assert f"{STARTER_NAME} is trained once, on 12 documents of Python's documentation" in stderr
    assert f"NOTE: {STARTER_NAME} is a 0.2M-parameter GPT-2 trained from scratch" in stderr
    assert "Expect English-like text about programming, not good articles." in stderr
    assert (
        f'Recorded model = "{STARTER_NAME}" in articlegen.toml: generate, serve and web use it'
        in stderr
    )
    assert tomllib.loads((tmp_path / "articlegen.toml").read_text()) == {"model": STARTER_NAME}
    assert "Imported prompts.csv: 25 new, 0 unchanged." in stdout
    assert "Job 1 completed: 32 of 32 articles written, 0 failed" in stdout
    assert "32 articles exported to out/ (articles.csv, md/, html/index.html)." in stdout
    assert len(list((tmp_path / "out" / "html").glob("*.html"))) == 33  # 32 + index
    with (tmp_path / "out" / "articles.csv").open(encoding="utf-8", newline="") as handle:
        assert {r["model"] for r in csv.DictReader(handle)} == {STARTER_NAME}

    database = tmp_path / "articlegen.db"
    db = Database.open(f"sqlite:///{database}")
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
    db.close()

    # Run again: the recorded model is reused, not trained again, and the Hub not asked.
    stdout, stderr = _demo(env)
    assert "can't be reached" not in stderr  # the recorded model is used, no Hub asked
    assert "Training" not in stderr  # the progress bar's label
    assert "is trained once" not in stderr
    assert f"NOTE: {STARTER_NAME} is a 0.2M-parameter GPT-2" in stderr
    assert "32 articles exported" in stdout

    # Then, as the demo's closing lines suggest, the user's own commands: new prompts, generated
    # by a separate `articlegen generate` process and by a run of the served deployment.
    (tmp_path / "mine.csv").write_text(
        "external_id,topic,max_new_tokens\nmine-1,Night trains,8\nmine-2,Heat pumps,8\n",
        encoding="utf-8",
    )
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("ARTICLEGEN_")}
    process_env.update(
        {
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
    )
    articlegen = str(Path(sys.executable).parent / "articlegen")

    def run(*args: str) -> str:
        done = subprocess.run(
            [articlegen, *args], env=process_env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("import", "mine.csv")
    assert "1 of 1 articles written" in run("generate", "--limit", "1")
    served = subprocess.Popen(
        [articlegen, "serve"],
        env=process_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_deployments({"generate-articles/articlegen"})
        flow_run = run_deployment("generate-articles/articlegen", parameters={}, timeout=240)
        assert isinstance(flow_run, FlowRun)
        assert flow_run.state is not None
        assert flow_run.state.is_completed(), flow_run.state
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=60)
    models = _models_of_articles(database)
    assert models["mine-1"] == models["mine-2"] == {STARTER_NAME}
    assert set().union(*models.values()) == {STARTER_NAME}
    db = Database.open(f"sqlite:///{database}")
    with db.session(write=False) as session:
        assert registry.get_model(session, STARTER_NAME).revision == revision  # never retrained
    db.close()


@pytest.fixture
def context(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    set_env(monkeypatch, {"ARTICLEGEN_MODELS_DIR": str(tmp_path / "models")}, sqlite_url)
    return context_for(load_settings())


def _register(
    context: RunContext,
    kind: ModelKind = ModelKind.FROM_SCRATCH,
    status: ModelStatus = ModelStatus.TRAINING,
    corpus: str = "/x/models/.corpora/python-docs.txt",
) -> Path:
    """A row as a starter training writes it (or, with other values, as someone else's)."""
    source = context.settings.models_dir.resolve() / STARTER_NAME / "model"
    with context.database.session() as session:
        row = registry.start_training(
            session, STARTER_NAME, kind, source=str(source), base=None, base_revision=None,
            hyperparameters={"corpus": [corpus]}, corpus={}, corpus_hash="0" * 64,
        )  # fmt: skip
        row.status = status
    return source


def _row(context: RunContext) -> ModelStatus | None:
    with context.database.session(write=False) as session:
        row = registry.find_model(session, STARTER_NAME)
        return None if row is None else row.status


@pytest.mark.usefixtures("fresh_contexts")
def test_a_ready_starter_is_reused_and_one_whose_weights_are_gone_is_trained_again(
    context: RunContext,
) -> None:
    source = _register(context, status=ModelStatus.READY)
    source.mkdir(parents=True)
    (source / "config.json").write_text("{}", encoding="utf-8")
    (source / "model.safetensors").write_bytes(b"weights")
    assert prepare_starter(context, SHORT) == StarterPlan("reuse")

    # The project copied elsewhere: the row names the old place, the weights are here.
    with context.database.session() as session:
        registry.get_model(session, STARTER_NAME).source = "/old/place/demo-english/model"
    plan = prepare_starter(context, SHORT)
    assert plan == StarterPlan(
        "reuse", note=f"Using {STARTER_NAME} from {source}, where it is now."
    )
    with context.database.session(write=False) as session:
        assert registry.get_model(session, STARTER_NAME).source == str(source)

    (source / "model.safetensors").unlink()
    plan = prepare_starter(context, SHORT)
    assert plan.action == "train"
    assert plan.note is not None
    assert plan.note.startswith(f"{STARTER_NAME}'s row is in the registry but its weights are")
    assert _row(context) is None  # the row went, and the directory with it
    assert not source.parent.exists()
    assert plan.params is not None
    (corpus,) = plan.params.corpus
    assert corpus.read_text(encoding="utf-8").count("<|endoftext|>") == 11  # 12 documents


@pytest.mark.usefixtures("fresh_contexts")
def test_a_stopped_starter_run_is_continued_unless_its_corpus_is_gone(
    context: RunContext,
) -> None:
    corpus = context.settings.models_dir / ".corpora" / "python-docs.txt"
    for status in (ModelStatus.TRAINING, ModelStatus.FAILED):
        corpus.unlink(missing_ok=True)
        _register(context, status=status)
        # No corpus file yet: nothing to continue from, so the run starts again.
        plan = prepare_starter(context, SHORT)
        assert (plan.action, _row(context)) == ("train", None)
        assert plan.note is not None
        assert "its corpus is gone: training it again" in plan.note

        _register(context, status=status)
        plan = prepare_starter(context, SHORT)  # the corpus the last plan wrote is there now
        assert plan.action == "resume"
        assert _row(context) is status
        with context.database.session() as session:
            registry.remove_model(session, STARTER_NAME)


@pytest.mark.usefixtures("fresh_contexts")
def test_a_demo_english_the_demo_did_not_train_is_left_alone(context: RunContext) -> None:
    for kind, corpus in [
        (ModelKind.HUB, "/x/models/.corpora/python-docs.txt"),
        (ModelKind.FINE_TUNED, "/x/models/.corpora/python-docs.txt"),
        (ModelKind.FROM_SCRATCH, "/home/me/my-corpus.txt"),
    ]:
        _register(context, kind=kind, status=ModelStatus.READY, corpus=corpus)
        with pytest.raises(InputError, match="that the demo did not train"):
            prepare_starter(context, SHORT)
        assert _row(context) is ModelStatus.READY  # untouched
        with context.database.session() as session:
            registry.remove_model(session, STARTER_NAME)


@pytest.mark.usefixtures("fresh_contexts")
def test_files_no_row_accounts_for_are_cleared_only_when_a_training_wrote_them(
    context: RunContext,
) -> None:
    directory = context.settings.models_dir / STARTER_NAME
    (directory / "model").mkdir(parents=True)
    (directory / "loss.png").write_bytes(b"png")
    plan = prepare_starter(context, SHORT)
    assert plan.action == "train"
    assert plan.note is not None
    assert "holds a starter model this database has no record of" in plan.note
    assert not directory.exists()

    (directory / "notes").mkdir(parents=True)
    with pytest.raises(InputError, match="holds files a training did not write"):
        prepare_starter(context, SHORT)
    assert (directory / "notes").is_dir()


@pytest.mark.usefixtures("fresh_contexts")
def test_the_starter_is_not_touched_while_another_process_trains_it(
    context: RunContext,
) -> None:
    with (
        exclusive(context.settings, STARTER_NAME),
        pytest.raises(InputError, match="another process is training demo-english"),
    ):
        # The lock is this process's here; another process holding it is what `running` sees.
        prepare_starter(context, SHORT)


def test_the_demo_recipe_fits_its_model() -> None:
    shape = SIZES[DEMO_RECIPE.size]
    assert DEMO_RECIPE.block_size <= shape.n_positions
    params = DEMO_RECIPE.params(Path("/x/models/.corpora/python-docs.txt"))
    assert (params.grad_accum, params.patience, params.from_scratch) == (1, 0, True)


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
