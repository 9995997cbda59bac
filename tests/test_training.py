"""Fine-tuning for real, as a user runs it: a tiny GPT-2 trained with Hugging Face's Trainer
through `articlegen train` (the fine-tune-model flow), killed and resumed, trained on what
editors approved, generating as a registered model, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from articlegen.core.settings import load_settings
from articlegen.db import Article, Database, Prompt, PromptStatus
from articlegen.db.articles import ArticleRow, record_batch
from articlegen.db.jobs import create_job
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.export import RANDOM_WEIGHTS_NOTE
from articlegen.generator.loading import RANDOM_WEIGHTS_FILE
from articlegen.review.actions import approve, edit_and_approve, reject
from articlegen.runs import context_for
from articlegen.training.params import TrainParams
from articlegen.training.selection import select_corpus

from .conftest import CliHarness
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .training_support import FAST, model_directories, registered, set_env, structured_corpus

pytestmark = pytest.mark.usefixtures("fresh_contexts")


def test_fine_tune_then_generate_with_it(
    prefect_server: None,  # noqa: F811
    run_cli: CliHarness,
    database_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    corpus = structured_corpus(tmp_path / "reports.txt")
    # Blocks of 64 tokens: the memorisation check writes 48 a sample, so the limit is below.
    result = run_cli(
        "train", "reports-v1", "--corpus", str(corpus), *FAST, "--memorisation-limit", "40",
        env=training_env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    row = registered(database_url, "reports-v1")
    assert row is not None
    assert (row.status, row.kind) == (ModelStatus.READY, ModelKind.FINE_TUNED)
    assert [e["epoch"] for e in row.epochs] == [0, 1, 2, 3, 4, 5]
    perplexity = [e["eval_perplexity"] for e in row.epochs]
    assert all(later < earlier for earlier, later in itertools.pairwise(perplexity))
    assert perplexity[-1] < perplexity[0] / 4, perplexity  # measured: 689 -> 43
    assert row.best_epoch == 5
    # Where it came from and what it saw.
    assert row.base == str(tiny_model_dir)
    assert row.base_revision is not None
    assert row.base_revision.startswith("sha256:")
    directory = tmp_path / "models" / "reports-v1"
    assert row.source == str(directory / "model")
    assert row.revision is not None
    assert row.revision.startswith("sha256:")
    assert row.corpus["files"] == [str(corpus)]
    assert row.corpus["documents_read"] == 120
    assert (row.corpus["train_documents"], row.corpus["eval_documents"]) == (108, 12)
    assert row.corpus["train_tokens"] > 0
    assert len(row.corpus_hash or "") == 64
    assert row.hyperparameters["learning_rate"] == 1e-3
    assert row.hyperparameters["block_size_used"] == 64
    assert 0 <= row.memorisation["longest_overlap"] < 40
    assert not row.memorisation["flagged"]
    assert (directory / "model" / "model.safetensors").is_file()
    assert (directory / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (directory / "checkpoints").exists()  # the best epoch is in model/
    # What the user was told.
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "epoch",
        "step",
        "train_loss",
        "eval_loss",
        "eval_perplexity",
        "best",
    ]
    assert f"{perplexity[0]:.2f} before training, {perplexity[-1]:.2f} at epoch 5" in result.stdout
    assert "Next: articlegen generate --model reports-v1" in result.stdout

    # Generate with it, by name; and with the plain directory, which gets a row of its own.
    prompts = tmp_path / "p.csv"
    prompts.write_text("topic\nNight trains\nFerries\nTrams\n", encoding="utf-8")
    assert run_cli("import", str(prompts)).exit_code == 0
    named = run_cli(
        "generate",
        "--model",
        "reports-v1",
        "--limit",
        "2",
        "--max-new-tokens",
        "8",
        env=training_env,
    )
    assert named.exit_code == 0, named.output
    by_default = run_cli("generate", "--max-new-tokens", "8", env=training_env)  # ARTICLEGEN_MODEL
    assert by_default.exit_code == 0, by_default.output
    # A directory's row is called as ARTICLEGEN_MODEL names it, as its articles are.
    local = registered(database_url, str(tiny_model_dir))
    assert local is not None
    assert local.kind is ModelKind.RANDOM  # `models init` wrote it: never trained
    assert local.source == str(tiny_model_dir)
    db = Database.open(database_url)
    with db.session(write=False) as session:
        written = {
            (a.model_id, a.model_name, a.model_kind) for a in session.scalars(select(Article))
        }
    db.close()
    # Trained from those random weights, the model is not random: its articles are unmarked.
    assert written == {
        (row.id, "reports-v1", ModelKind.FINE_TUNED),
        (local.id, str(tiny_model_dir), ModelKind.RANDOM),
    }
    assert not (directory / "model" / RANDOM_WEIGHTS_FILE).exists()
    shown = json.loads(run_cli("articles", "list", "--format", "json").stdout)
    assert sorted((a["model"], a["warning"]) for a in shown) == [
        (str(tiny_model_dir), RANDOM_WEIGHTS_NOTE), ("reports-v1", None), ("reports-v1", None)
    ]  # fmt: skip

    listed = run_cli("models", "list", "--format", "json")
    models = {m["name"]: m for m in json.loads(listed.stdout)}
    assert set(models) == {"reports-v1", str(tiny_model_dir)}
    assert models["reports-v1"]["articles"] == 2
    assert models[str(tiny_model_dir)]["articles"] == 1
    assert models["reports-v1"]["eval_perplexity"] == round(perplexity[-1], 2)
    shown = run_cli("models", "show", "reports-v1")
    assert "Evaluation per epoch (0: before training):" in shown.stdout
    assert "hyperparameters.grad_accum" in shown.stdout

    removed = run_cli("models", "rm", "reports-v1", "--yes")
    assert removed.exit_code == 0, removed.output
    assert f"deleted {directory}" in removed.stdout
    assert "the 2 articles it wrote keep its name" in removed.stdout
    assert not directory.exists()
    assert registered(database_url, "reports-v1") is None
    db = Database.open(database_url)
    with db.session(write=False) as session:
        kept = [(a.model_id, a.model_name, a.model_kind) for a in session.scalars(select(Article))]
    db.close()
    assert sorted(kept, key=str) == sorted(
        [
            (None, "reports-v1", ModelKind.FINE_TUNED),
            (None, "reports-v1", ModelKind.FINE_TUNED),
            (local.id, str(tiny_model_dir), ModelKind.RANDOM),
        ],
        key=str,
    )


KILL = """
import os, signal, sys
from transformers import TrainerCallback
from articlegen.core.settings import load_settings
from articlegen.runs import context_for
from articlegen.training.memorisation import longest_shared_run
from articlegen.training.params import TrainParams
from articlegen.training.trainer import train_model

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

train_model(
    context_for(load_settings()), TrainParams.model_validate_json(sys.argv[1]), callbacks=[Kill()]
)
"""


def test_a_killed_run_resumes_to_the_same_result(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    corpus = structured_corpus(tmp_path / "reports.txt")
    whole = run_cli("train", "whole", "--corpus", str(corpus), *FAST, env=training_env)
    assert whole.exit_code == 0, whole.output

    # 12 optimizer steps an epoch: step 30 is in the middle of epoch 3.
    params = TrainParams(
        name="killed",
        base=str(tiny_model_dir),
        corpus=[corpus],
        learning_rate=1e-3,
        batch_size=8,
        grad_accum=1,
        block_size=64,
    )
    killed = subprocess.run(
        [sys.executable, "-c", KILL, params.model_dump_json(), "30"],
        env={**os.environ, **training_env, "ARTICLEGEN_DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    row = registered(sqlite_url, "killed")
    assert row is not None
    assert row.status is ModelStatus.TRAINING
    assert [e["epoch"] for e in row.epochs] == [0, 1, 2]
    assert row.progress["steps"] == 60  # written at most once a second: the step varies
    # Its process is gone: the registry says so, and `--resume` is the way on.
    listed = run_cli("models", "list", "--format", "json")
    (killed_row,) = [m for m in json.loads(listed.stdout) if m["name"] == "killed"]
    assert (killed_row["status"], killed_row["running"]) == ("training", False)
    assert "training (stopped)" in run_cli("models", "list").stdout
    # Epoch 2's checkpoint is the last whole one. A kill in the middle of writing the next
    # leaves its weights without `trainer_state.json` (written last): resume must pass over it.
    checkpoints = tmp_path / "models" / "killed" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-12", "checkpoint-24"]
    cut_short = checkpoints / "checkpoint-36"
    shutil.copytree(checkpoints / "checkpoint-24", cut_short)
    (cut_short / "trainer_state.json").unlink()

    resumed = run_cli("train", "killed", "--resume", env=training_env)
    assert resumed.exit_code == 0, resumed.output
    done, reference = registered(sqlite_url, "killed"), registered(sqlite_url, "whole")
    assert done is not None
    assert reference is not None
    assert done.status is ModelStatus.READY
    assert [e["step"] for e in done.epochs] == [e["step"] for e in reference.epochs]
    # The same seed, data order and optimizer state from the checkpoint, on the same CPU
    # kernels: the losses agree to float32 rounding (measured: bit for bit).
    for ours, theirs in zip(done.epochs, reference.epochs, strict=True):
        assert math.isclose(ours["eval_loss"], theirs["eval_loss"], rel_tol=1e-6), (ours, theirs)
    assert done.corpus_hash == reference.corpus_hash

    # A finished run has nothing to resume; the options it started with cannot be changed.
    again = run_cli("train", "killed", "--resume", env=training_env)
    assert again.exit_code == 1
    assert "finished training: nothing to resume" in again.stderr
    changed = run_cli("train", "killed", "--resume", "--epochs", "9", env=training_env)
    assert changed.exit_code == 2
    assert "--resume continues 'killed' with the options it started with: drop --epochs" in (
        changed.stderr
    )


def _seed_reviewed(db: Database) -> dict[str, int]:
    """Four articles: approved, edited by an editor, rejected, and not reviewed."""
    with db.session() as session:
        prompts = [
            Prompt(content_key=f"{i:064d}", topic=f"Topic {i}", tags=tags)
            for i, tags in enumerate([["support"], [], [], []])
        ]
        session.add_all(prompts)
        session.flush()
        job = create_job(session, {}, "tiny")
        texts = ["Approved body one.", "Generated body two.", "Rejected three.", "Pending four."]
        rows = [
            ArticleRow(
                prompt_id=p.id, variant=1, version=1, raw_text=t, title=p.topic, body=t,
                rendered={}, seed=1, decoding={}, model_name="tiny", model_revision=None,
                template_name=None, template_version=None, prompt_tokens=0, tokens_generated=0,
                generation_seconds=0.0, timings={}, finish_reason=None, metrics={},
                prompt_text=f"{p.topic}\n\n",
            )
            for p, t in zip(prompts, texts, strict=True)
        ]  # fmt: skip
        for prompt in prompts:
            prompt.status, prompt.claimed_by = PromptStatus.CLAIMED, job.id
        ids = [a.id for a in record_batch(session, job.id, rows, []).articles]
    return dict(zip(["approved", "edited", "rejected", "pending"], ids, strict=True))


def test_from_approved_trains_on_approved_articles_and_the_editors_text(
    prefect_server: None,  # noqa: F811
    run_cli: CliHarness,
    database: Database,
    database_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = _seed_reviewed(database)
    context = context_for(load_settings())
    with database.session() as session:
        approve(session, ids["approved"], "maria")
        edit_and_approve(
            session, context.templates, ids["edited"], "maria", "Topic 1", "Editor text two."
        )
        reject(session, ids["rejected"], "maria", "Off topic")

    set_env(monkeypatch, training_env, database_url)
    params = TrainParams(name="approved", from_approved=True)
    corpus = select_corpus(context_for(load_settings()), params, resume=False)
    assert sorted(corpus.train + corpus.eval) == [
        "Topic 0\n\nApproved body one.",
        "Topic 1\n\nEditor text two.",
    ]
    assert corpus.summary["article_ids"] == f"{ids['approved']}-{ids['edited']}"

    result = run_cli(
        "train", "approved", "--from-approved", "--eval-fraction", "0.5", "--epochs", "1",
        "--block-size", "16", "--memorisation-samples", "1", env=training_env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = registered(database_url, "approved")
    assert row is not None
    assert row.corpus["articles"] == 2
    assert row.corpus["article_ids"] == f"{ids['approved']}-{ids['edited']}"
    assert row.corpus["files"] == []

    # One approved article of prompts tagged "support": too few to hold one out.
    tagged = run_cli("train", "support", "--from-approved", "--tag", "support", env=training_env)
    assert tagged.exit_code == 1
    assert "the corpus has 1 distinct document (of 1 read): training needs at least 2" in (
        tagged.stderr
    )
    assert registered(database_url, "support") is None
    assert not (tmp_path / "models" / "support").exists()


def test_training_on_an_empty_selection_fails_clearly(
    prefect_server: None,  # noqa: F811
    run_cli: CliHarness,
    database_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    result = run_cli("train", "nothing", "--from-approved", env=training_env)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no approved articles: approve some in the review workspace (`articlegen web`) "
        "or with `articlegen review approve ID`, widen --tag/--since, or train on --corpus "
        "FILE\n"
    )
    since = run_cli(
        "train",
        "nothing",
        "--from-approved",
        "--tag",
        "news",
        "--since",
        "2026-01-02",
        env=training_env,
    )
    assert since.exit_code == 1
    assert "no approved articles of prompts tagged news since 2026-01-02T00:00:00+00:00" in (
        since.stderr
    )
    assert registered(database_url, "nothing") is None
    assert model_directories(tmp_path / "models") == []


def _help_defaults(text: str) -> dict[str, str]:
    """`--flag ... [default: X]` from click's help, whose lines wrap anywhere."""
    flat = " ".join(text.split())
    found = re.findall(r"(--[a-z-]+) [A-Z]+ (?:(?!--[a-z]).)*?\[default: ([^\]]+)\]", flat)
    return dict(found)


def test_the_defaults_are_the_seeds_recipe(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    shown = _help_defaults(run_cli("train", "--help").stdout)
    seed = {"--epochs": 5, "--lr": 5e-5, "--warmup-steps": 200, "--grad-accum": 32}
    seed |= {"--max-grad-norm": 1.0, "--eval-fraction": 0.1, "--patience": 2}
    assert {flag: float(shown[flag]) for flag in seed} == seed

    corpus = structured_corpus(tmp_path / "reports.txt")
    result = run_cli(
        "train", "recipe", "--corpus", str(corpus), "--block-size", "32", env=training_env
    )
    assert result.exit_code == 0, result.output
    row = registered(sqlite_url, "recipe")
    assert row is not None
    stored = row.hyperparameters
    assert {
        "epochs": stored["epochs"],
        "lr": stored["learning_rate"],
        "warmup": stored["warmup_steps"],
        "accumulation": stored["grad_accum"],
        "clip": stored["max_grad_norm"],
    } == {"epochs": 5, "lr": 5e-5, "warmup": 200, "accumulation": 32, "clip": 1.0}
    # 108 documents make a few hundred 32-token blocks: 200 warm-up steps would be the whole
    # run, so they are cut to a tenth, and the user is told why.
    steps = stored["optimizer_steps"]
    assert stored["warmup_steps_used"] == int(steps * 0.1)
    told = f"Warning: --warmup-steps 200 is more than a tenth of this run's {steps} optimizer steps"
    assert result.stderr.count(told) == 1  # as the run starts, or at its end: once


def test_the_memorisation_check_flags_a_model_that_repeats_its_corpus(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    """Ten documents around one passage: the model learns the passage by heart, and writes it
    back when given its opening."""
    run_cli = CliHarness(sqlite_url, tmp_path)
    rng = random.Random(7)
    words = "the a of river stone lamp quiet north harbour winter bread copper bell".split()
    passage = " ".join(rng.choice(words) for _ in range(80))
    corpus = tmp_path / "passage.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": f"{passage} note {i}."}) + "\n" for i in range(10))
    )
    result = run_cli(
        "train", "parrot", "--corpus", str(corpus), "--lr", "3e-3", "--batch-size", "4",
        "--grad-accum", "1", "--block-size", "32", "--epochs", "15", "--warmup-steps", "0",
        "--memorisation-limit", "20", env=training_env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = registered(sqlite_url, "parrot")
    assert row is not None
    found = row.memorisation
    assert found["flagged"], found
    assert found["longest_overlap"] >= 20
    assert found["example"].strip()
    assert found["example"].strip() in passage
    assert f"is {found['longest_overlap']} tokens, at or over --memorisation-limit 20" in (
        result.stderr
    )


def test_training_from_scratch_trains_its_own_tokenizer(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    corpus = structured_corpus(tmp_path / "c.txt", documents=40)
    result = run_cli(
        "train", "scratch", "--from-scratch", "--size", "tiny", "--corpus", str(corpus),
        "--epochs", "2", *FAST[:6], "--block-size", "32", "--memorisation-samples", "0",
        env=training_env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = registered(sqlite_url, "scratch")
    assert row is not None
    assert (row.kind, row.base, row.status) == (ModelKind.FROM_SCRATCH, None, ModelStatus.READY)
    # It started from `models init`'s random weights, but it is trained: not marked random.
    assert not (tmp_path / "models" / "scratch" / "model" / RANDOM_WEIGHTS_FILE).exists()
    assert row.epochs[-1]["eval_loss"] < row.epochs[0]["eval_loss"]
    vocabulary = json.loads(
        (tmp_path / "models" / "scratch" / "model" / "tokenizer.json").read_text()
    )
    assert "Report" in vocabulary["model"]["vocab"] or "ĠReport" in vocabulary["model"]["vocab"]
