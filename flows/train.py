"""The `fine-tune-model` flow: train a model on a corpus and/or approved articles, register it.

Orchestration only; the work is `articlegen.training`. One task, not retried: a run that dies
is continued from its last checkpoint with `resume` (the CLI's `train NAME --resume`), which a
blind retry from the start would throw away.
"""

from __future__ import annotations

import hashlib
import re
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from articlegen.core.errors import ConfigError
from articlegen.core.settings import Settings, load_settings
from articlegen.export.records import epoch_records
from articlegen.runs import context_for
from articlegen.training.params import TrainParams
from articlegen.training.report import summary_markdown
from articlegen.training.result import TrainResult

__all__ = ["fine_tune_model"]


def _key(name: str, what: str) -> str:
    # Artifact keys are lowercase letters, digits and dashes; model names allow more, so the
    # name's own hash keeps `a_b` and `a.b` apart.
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower())
    return f"model-{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}-{what}"


@task(name="train-model", cache_policy=NO_CACHE)
def train(settings: Settings, params: TrainParams | None, resume: str | None) -> TrainResult:
    """Train (or continue training), keeping a progress artifact current."""
    # Imported here: the trainer pulls in torch, transformers and accelerate, which a worker
    # that only imports prompts should not pay for.
    from articlegen.training.trainer import resume_training, train_model

    name = params.name if params is not None else str(resume)
    progress = create_progress_artifact(0.0, key=_key(name, "progress"))
    assert isinstance(progress, UUID)  # the sync API, called from a sync task

    def report(step: int, steps: int) -> None:
        update_progress_artifact(progress, 100.0 * step / max(steps, 1))

    context = context_for(settings)
    if params is not None:
        return train_model(context, params, on_progress=report)
    return resume_training(context, name, on_progress=report)


@flow(name="fine-tune-model")
def fine_tune_model(params: TrainParams | None = None, resume: str | None = None) -> TrainResult:
    """Fine-tune a model (or train one from scratch) and add it to the model registry.

    Args:
        params: A new run: its name, base model, documents and recipe.
        resume: Instead, the name of a run that stopped: continue it from its last
            checkpoint, with the parameters and documents it started with.
    """
    if (params is None) == (resume is None):
        raise ConfigError("give params (a new run) or resume (a model's name): exactly one")
    result = train(load_settings(), params, resume)
    for warning in result.warnings:
        get_run_logger().warning("training: %s", warning)
    rows = epoch_records(result.epochs, result.best_epoch)
    create_table_artifact(rows, key=_key(result.name, "epochs"))
    create_markdown_artifact(summary_markdown(result), key=_key(result.name, "summary"))
    return result
