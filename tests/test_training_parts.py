"""The training's parts on their own: the registry's naming, the memorisation search, the
out-of-memory message, gradient checkpointing, the flow's artifacts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.client.orchestration import get_client
from sqlalchemy import select
from transformers import TrainerCallback

from articlegen.core.errors import ConfigError, ModelError
from articlegen.core.settings import load_settings
from articlegen.db import Database
from articlegen.db.models import ModelKind, ModelStatus, RegisteredModel
from articlegen.db.registry import ensure_model
from articlegen.flows.train import fine_tune_model
from articlegen.runs import context_for
from articlegen.training.memorisation import Memorisation, longest_shared_run
from articlegen.training.params import TrainParams
from articlegen.training.report import summary_markdown
from articlegen.training.result import TrainResult
from articlegen.training.trainer import _no_gain, train_model

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .training_support import registered, set_env, structured_corpus

pytestmark = pytest.mark.usefixtures("fresh_contexts")


def test_ensure_model_gives_each_set_of_weights_oneregistered(database: Database) -> None:
    with database.session() as session:
        first = ensure_model(session, "gpt2", "gpt2", "abc", ModelKind.HUB)
        assert ensure_model(session, "gpt2", "gpt2", "abc", ModelKind.HUB).id == first.id
        # The same weights under another name are the same row.
        assert ensure_model(session, "alias", "gpt2", "abc", ModelKind.HUB).id == first.id
        # New weights under a taken name: the name gets the revision.
        moved = ensure_model(session, "gpt2", "gpt2", "def4567890123456", ModelKind.HUB)
        assert moved.id != first.id
        assert moved.name == "gpt2@def456789012"
        names = [m.name for m in session.scalars(select(RegisteredModel))]
    assert sorted(names) == ["gpt2", "gpt2@def456789012"]


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.lists(st.integers(0, 5), max_size=30), min_size=1, max_size=4),
    corpus=st.lists(st.integers(0, 5), max_size=60),
)
def test_longest_shared_run_matches_brute_force(
    samples: list[list[int]], corpus: list[int]
) -> None:
    """A small alphabet, so long shared runs are common and hash shortcuts would show."""
    length, start, which = longest_shared_run(samples, np.asarray(corpus, dtype=np.int64))
    text = "," + ",".join(map(str, corpus)) + ","
    best = 0
    for sample in samples:
        for i in range(len(sample)):
            for j in range(i + 1, len(sample) + 1):
                if j - i > best and "," + ",".join(map(str, sample[i:j])) + "," in text:
                    best = j - i
    assert length == best
    if length:
        run = samples[which][start : start + length]
        assert "," + ",".join(map(str, run)) + "," in text


class _OutOfMemory(TrainerCallback):
    """The device's edge: the first step runs out of memory, as a too-large batch would."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_fix_and_fails_the_row(
    sqlite_url: str, tiny_model_dir: Path, tmp_path: Path, training_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    set_env(monkeypatch, training_env, sqlite_url)
    params = TrainParams(
        name="big", corpus=[structured_corpus(tmp_path / "c.txt", 20)], batch_size=8,
        grad_accum=4, block_size=32,
    )  # fmt: skip
    with pytest.raises(ModelError) as caught:
        train_model(context_for(load_settings()), params, callbacks=[_OutOfMemory()])
    assert str(caught.value) == (
        "out of memory at --batch-size 8: try --batch-size 4 with --grad-accum twice as large "
        "(the effective batch, their product, stays the same), or --gradient-checkpointing"
    )
    row = registered(sqlite_url, "big")
    assert row is not None
    assert (row.status, row.error) == (ModelStatus.FAILED, str(caught.value))
    # Its name now refuses to generate, and says what to do.
    with pytest.raises(ModelError, match="failed to train"):
        context_for(load_settings()).model_spec("big")


def test_the_flow_reports_progress_epochs_and_a_summary_as_artifacts(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, training_env, sqlite_url)
    params = TrainParams(
        name="Flow_Model.1", corpus=[structured_corpus(tmp_path / "c.txt", 30)], epochs=2,
        grad_accum=1, batch_size=4, block_size=32, memorisation_samples=2,
    )  # fmt: skip
    result = fine_tune_model(params=params)
    assert [e["epoch"] for e in result.epochs] == [0, 1, 2]
    # The key: the name made a slug, and the name's hash, so `a.b` and `a_b` stay apart.
    key = f"model-flow-model-1-{hashlib.sha256(b'Flow_Model.1').hexdigest()[:8]}"
    with get_client(sync_client=True) as client:
        found = {
            a.key: a
            for a in client.read_artifacts()
            if a.key and a.key.startswith("model-flow-model-1-")
        }
    assert set(found) == {
        f"{key}-progress",
        f"{key}-epochs",
        f"{key}-summary",
    }
    assert found[f"{key}-progress"].data == 100.0
    table = found[f"{key}-epochs"].data
    rows: list[dict[str, Any]] = json.loads(table) if isinstance(table, str) else table  # type: ignore[assignment]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    summary = str(found[f"{key}-summary"].data)
    assert summary.startswith("# Model Flow_Model.1: ready")
    assert "## Memorisation" in summary
    assert "Generate with it: `articlegen generate --model Flow_Model.1`." in summary

    with pytest.raises(ConfigError, match="exactly one"):
        fine_tune_model(params=params, resume="Flow_Model.1")


class _Seen(TrainerCallback):
    """Records what the trainer trains with."""

    def __init__(self) -> None:
        self.checkpointing: list[bool] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.checkpointing.append(bool(kwargs["model"].is_activation_checkpointing))


@pytest.mark.parametrize("flag", [False, True])
def test_gradient_checkpointing_is_on_only_when_asked(
    sqlite_url: str, tmp_path: Path, training_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    flag: bool,
) -> None:  # fmt: skip
    set_env(monkeypatch, training_env, sqlite_url)
    params = TrainParams(
        name="gc", corpus=[structured_corpus(tmp_path / "c.txt", 20)], epochs=1, grad_accum=1,
        batch_size=4, block_size=32, memorisation_samples=0, gradient_checkpointing=flag,
    )  # fmt: skip
    seen = _Seen()
    result = train_model(context_for(load_settings()), params, callbacks=[seen])
    assert seen.checkpointing == [flag]
    assert result.epochs[-1]["eval_loss"] < result.epochs[0]["eval_loss"]


def test_the_summary_shows_model_text_as_text(tmp_path: Path) -> None:
    """The memorisation example is the model's own text: in the markdown artifact it must not
    become a link, an image or HTML, whatever it holds."""
    hostile = (
        "![x](http://evil.example/x.png) [click](javascript:alert(1))\n```\n<script>x</script>"
    )
    result = TrainResult(
        name="m", directory=tmp_path, epochs=[], best_epoch=None, stopped_early=False,
        memorisation=Memorisation(samples=1, longest_overlap=60, limit=50, flagged=True,
                                  example=hostile),
        corpus={"hash": "0" * 64, "train_documents": 2, "eval_documents": 1}, warnings=[],
        train_tokens=10, tokens_per_second=1.0, seconds=1.0, loss_curve=tmp_path / "loss.png",
    )  # fmt: skip
    text = summary_markdown(result)
    lines = text.splitlines()
    opening = lines.index("``````text")  # longer than the longest run of backticks inside
    closing = lines.index("``````", opening + 1)
    assert "\n".join(lines[opening + 1 : closing]) == hostile
    outside = lines[:opening] + lines[closing + 1 :]
    assert not any("](" in line or "<script" in line for line in outside)
    assert "60 tokens (**flagged**, limit 50)" in text


def _epoch(n: int, loss: float) -> dict[str, Any]:
    return {"epoch": n, "eval_loss": loss, "eval_perplexity": float(np.exp(loss))}


@pytest.mark.parametrize(
    ("losses", "warned"),
    [
        ([6.0, 6.2, 6.1], True),  # the best trained epoch is still worse than the start
        ([6.0, 6.0], True),  # no better is no gain
        ([6.0, 5.9, 6.3], False),
        ([6.0], False),  # nothing trained (a resume that found all epochs done): nothing to say
    ],
)
def test_a_run_that_never_beat_its_starting_weights_says_so(
    losses: list[float], warned: bool
) -> None:
    epochs = [_epoch(n, loss) for n, loss in enumerate(losses)]
    trained = epochs[1:]
    best = min(trained, key=lambda e: e["eval_loss"])["epoch"] if trained else None
    warnings = _no_gain(epochs, best)
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith(
            f"no epoch improved on the starting weights (eval perplexity {np.exp(6.0):.2f} "
            f"before training, {np.exp(min(losses[1:])):.2f} at the best epoch, {best})"
        )
