"""One training run: corpus, model, Hugging Face `Trainer`, registry, memorisation check.

The registry row is written as the run goes: `training` with the corpus and hyperparameters
when it starts, each epoch's evaluation as it ends, and `ready` (with the weights' hash, the
best epoch and the memorisation figure) or `failed` with the reason. A run that died (SIGKILL
included) leaves its row `training` and its checkpoints on disk; `resume_training` continues
it from the last complete checkpoint, with the parameters and documents it started with.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback
from transformers.utils import logging as transformers_logging

from articlegen.core.errors import InputError, ModelError
from articlegen.core.interrupts import INTERRUPTED, interrupted
from articlegen.db import registry
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.generator.loading import (
    LoadedModel,
    ModelSpec,
    directory_digest,
    load_model,
    load_trainable,
    resolve_device,
)
from articlegen.generator.model_init import init_model
from articlegen.runs.context import RunContext
from articlegen.training.blocks import Blocks, collate, to_blocks
from articlegen.training.corpus import Corpus
from articlegen.training.memorisation import Memorisation, check_memorisation, reachable
from articlegen.training.params import TrainParams
from articlegen.training.plot import plot_losses
from articlegen.training.recipe import StepPlan, plan_steps, precision, training_arguments
from articlegen.training.recorder import ProgressHook, Recorder
from articlegen.training.result import TrainResult
from articlegen.training.selection import check_new_name, select_corpus, stored_params
from articlegen.training.store import exclusive, model_directory

__all__ = ["ProgressHook", "TrainResult", "resume_training", "train_model"]

# The largest block a default run uses: GPT-2's context.
_DEFAULT_BLOCK = 1024


def train_model(
    context: RunContext,
    params: TrainParams,
    *,
    on_progress: ProgressHook | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Train a new model called `params.name` and register it.

    `callbacks` are added to the trainer's: the tests' seam.
    """
    check_new_name(context, params.name)
    directory = model_directory(context.settings, params.name)
    with exclusive(context.settings, params.name):
        if directory.exists() and any(directory.iterdir()):
            raise InputError(
                f"{directory} already holds files: choose another name, or remove the directory"
            )
        directory.mkdir(parents=True, exist_ok=True)
        # Absolute paths: a resume may start from another working directory.
        params = params.model_copy(update={"corpus": [p.resolve() for p in params.corpus]})
        try:
            corpus = select_corpus(context, params, resume=False)
            return _run(context, params, corpus, directory, False, on_progress, callbacks)
        except BaseException:
            if not _registered(context, params.name):
                # Refused before it began (no documents, a bad option): leave nothing behind.
                shutil.rmtree(directory, ignore_errors=True)
            raise


def resume_training(
    context: RunContext,
    name: str,
    *,
    on_progress: ProgressHook | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Continue the training of `name` that stopped (failed, interrupted, killed) from its last
    complete checkpoint, with the parameters and documents it started with."""
    stored_params(context, name)  # a name that cannot be resumed is refused before any lock
    with exclusive(context.settings, name):
        # Again under the lock: the run may have finished while we waited to take it.
        params = stored_params(context, name)
        directory = model_directory(context.settings, name)
        directory.mkdir(parents=True, exist_ok=True)
        corpus = select_corpus(context, params, resume=True)
        return _run(context, params, corpus, directory, True, on_progress, callbacks)


def _registered(context: RunContext, name: str) -> bool:
    with context.database.session(write=False) as session:
        return registry.find_model(session, name) is not None


def _run(
    context: RunContext,
    params: TrainParams,
    corpus: Corpus,
    directory: Path,
    resume: bool,
    on_progress: ProgressHook | None,
    callbacks: Sequence[TrainerCallback],
) -> TrainResult:
    started = time.perf_counter()
    settings = context.settings
    loaded, base, kind = _starting_model(context, params, corpus, directory)
    tokenizer = loaded.tokenizer
    block_size = params.block_size or min(_DEFAULT_BLOCK, loaded.context_length)
    if block_size > loaded.context_length:
        raise InputError(
            f"--block-size {block_size} is longer than the model's context of "
            f"{loaded.context_length} tokens: give at most {loaded.context_length}"
        )
    train, held_out = (
        to_blocks(tokenizer, docs, block_size, corpus.chat) for docs in (corpus.train, corpus.eval)
    )
    plan = plan_steps(len(train), params)
    warnings = _warnings(params, plan, block_size)
    device = resolve_device(settings.device)
    mixed = precision(device, settings.dtype)
    hyperparameters = {
        **params.model_dump(mode="json", exclude={"name"}),
        "base": base,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "block_size_used": block_size,
        "warmup_steps_used": plan.warmup_steps,
        "optimizer_steps": plan.total_steps,
        "effective_batch": params.batch_size * params.grad_accum,
        "device": device.type,
        "precision": mixed,
    }
    with context.database.session() as session:
        if resume:
            row = registry.get_model(session, params.name)
            row.status, row.error, row.hyperparameters = ModelStatus.TRAINING, None, hyperparameters
        else:
            registry.start_training(
                session,
                params.name,
                kind,
                source=str(directory / "model"),
                base=base if kind is ModelKind.FINE_TUNED else None,
                base_revision=loaded.revision if kind is ModelKind.FINE_TUNED else None,
                hyperparameters=hyperparameters,
                corpus={
                    **corpus.summary,
                    "train_tokens": train.tokens,
                    "eval_tokens": held_out.tokens,
                },
                corpus_hash=corpus.hash,
            )
        # Told as the run starts, not after it: a GPU run may take hours.
        registry.record_progress(session, params.name, 0, plan.total_steps, warnings)
    prepared = _Prepared(
        loaded, train, held_out, plan, block_size, device, mixed, started, warnings
    )
    try:
        return _fit(context, params, corpus, directory, resume, on_progress, callbacks, prepared)
    except OSError as exc:
        # A full disk, a directory made read-only: the user's to fix, not a traceback.
        error = ModelError(
            f"training {params.name!r} could not write {exc.filename}: "
            f"{exc.strerror}; fix that, then `articlegen train {params.name} "
            "--resume`"
        )
        with context.database.session() as session:
            registry.fail_training(session, params.name, str(error))
        raise error from exc
    except BaseException as exc:
        with context.database.session() as session:
            registry.fail_training(session, params.name, _reason(exc))
        raise


@dataclass(frozen=True)
class _Prepared:
    """What a run settled before training: the model, its blocks, the plan, the device."""

    loaded: LoadedModel
    train: Blocks
    held_out: Blocks
    plan: StepPlan
    block_size: int
    device: torch.device
    mixed: str
    started: float
    warnings: list[str]


def _fit(
    context: RunContext,
    params: TrainParams,
    corpus: Corpus,
    directory: Path,
    resume: bool,
    on_progress: ProgressHook | None,
    callbacks: Sequence[TrainerCallback],
    prepared: _Prepared,
) -> TrainResult:
    """Train, save the best epoch, check it, and mark the row `ready`."""
    loaded, train, plan = prepared.loaded, prepared.train, prepared.plan
    tokenizer = loaded.tokenizer
    model_dir = directory / "model"
    recorder = Recorder(context, params.name, on_progress)
    checkpoints = directory / "checkpoints"
    trainer = Trainer(
        model=loaded.model,
        args=training_arguments(params, plan, checkpoints, prepared.device, prepared.mixed),
        data_collator=collate,
        train_dataset=train,
        eval_dataset=prepared.held_out,
        callbacks=[
            recorder,
            *([EarlyStoppingCallback(params.patience)] if params.patience else []),
            *callbacks,
        ],
    )
    trainer.remove_callback(PrinterCallback)  # its log lines are ours to print
    metrics = _train(trainer, checkpoints, resume, recorder, params.batch_size)
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    with context.database.session(write=False) as session:
        epochs = list(registry.get_model(session, params.name).epochs)
    trained = [e for e in epochs if e["epoch"] >= 1]
    best = min(trained, key=lambda e: e["eval_loss"])["epoch"] if trained else None
    warnings = [*prepared.warnings, *_no_gain(epochs, best)]
    memorisation = _memorisation(context, model_dir, params, corpus, prepared.block_size)
    curve = plot_losses(epochs, best, directory / "loss.png", f"{params.name}: loss per epoch")
    with context.database.session() as session:
        registry.finish_training(
            session,
            params.name,
            directory_digest(model_dir),
            best,
            memorisation.as_dict() if memorisation else {},
        )
    # Only now: a run killed before this point resumes from its last checkpoint.
    shutil.rmtree(checkpoints, ignore_errors=True)  # the best epoch's weights are in model/
    seconds = float(metrics.get("train_runtime", 0.0))
    run_tokens = train.tokens * recorder.epochs_here  # a resumed run counts its own epochs
    return TrainResult(
        name=params.name,
        directory=directory,
        epochs=epochs,
        best_epoch=best,
        stopped_early=bool(trained) and trained[-1]["epoch"] < params.epochs,
        memorisation=memorisation,
        corpus={**corpus.summary, "hash": corpus.hash, "train_tokens": train.tokens},
        warnings=warnings,
        train_tokens=train.tokens,
        tokens_per_second=run_tokens / seconds if seconds else 0.0,
        seconds=time.perf_counter() - prepared.started,
        loss_curve=curve,
    )


def _train(
    trainer: Trainer, checkpoints: Path, resume: bool, recorder: Recorder, batch_size: int
) -> dict[str, float]:
    """Evaluate the starting weights (epoch 0), then train, from the last checkpoint when
    resuming; an out-of-memory error becomes a message with the fix."""
    last = _last_checkpoint(checkpoints) if resume else None
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        if not recorder.has_epoch(0):
            trainer.evaluate()
        output = trainer.train(resume_from_checkpoint=last)
    except torch.OutOfMemoryError as exc:
        smaller = max(1, batch_size // 2)
        raise ModelError(
            f"out of memory at --batch-size {batch_size}: try --batch-size {smaller} with "
            f"--grad-accum twice as large (the effective batch, their product, stays the "
            "same), or --gradient-checkpointing"
        ) from exc
    finally:
        transformers_logging.set_verbosity(verbosity)
    return dict(output.metrics)


def _last_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was written whole. The trainer writes `trainer_state.json`
    last: a newer checkpoint without it was cut short by the kill, and is removed."""
    steps = {
        p: int(p.name.removeprefix("checkpoint-"))
        for p in checkpoints.glob("checkpoint-*")
        if p.name.removeprefix("checkpoint-").isdigit()
    }
    for checkpoint in sorted(steps, key=steps.__getitem__, reverse=True):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            shutil.rmtree(checkpoint, ignore_errors=True)
            continue
        return str(checkpoint)
    return None


def _warnings(params: TrainParams, plan: StepPlan, block_size: int) -> list[str]:
    """What the user should know about how the run went as it did."""
    found = [plan.warning] if plan.warning else []
    most = reachable(block_size)
    if params.memorisation_samples and params.memorisation_limit > most:
        found.append(
            f"with --block-size {block_size} the memorisation check writes {most} tokens a "
            f"sample, so it can never reach --memorisation-limit {params.memorisation_limit}: "
            f"give a limit of at most {most} to have it flag anything"
        )
    return found


def _no_gain(epochs: list[dict[str, Any]], best: int | None) -> list[str]:
    """A warning when no trained epoch measured better than the starting weights: the kept
    model is then worse on held-out text than the one training began from."""
    start = next((e for e in epochs if e["epoch"] == 0), None)
    kept = next((e for e in epochs if e["epoch"] == best), None)
    if start is None or kept is None or kept["eval_loss"] < start["eval_loss"]:
        return []
    return [
        f"no epoch improved on the starting weights (eval perplexity "
        f"{start['eval_perplexity']:.2f} before training, {kept['eval_perplexity']:.2f} at "
        f"the best epoch, {best}): the documents may be too few, or unlike the held-out ones; "
        "train on more, or use the base model as it is"
    ]


def _starting_model(
    context: RunContext, params: TrainParams, corpus: Corpus, directory: Path
) -> tuple[LoadedModel, str | None, ModelKind]:
    """The weights training starts from, the base's name, and the kind of model it makes."""
    settings = context.settings
    if params.from_scratch:
        init = directory / "init"
        if not init.is_dir():
            # The tokenizer learns the training split only: the held-out text stays unseen.
            init_model(init, params.size or "small", seed=params.seed, text="\n".join(corpus.train))
        spec = ModelSpec(str(init), device=settings.device, dtype=settings.dtype)
        return load_trainable(spec), None, ModelKind.FROM_SCRATCH
    spec = context.model_spec(params.base)
    loaded = load_trainable(spec)
    # A directory by its absolute path, so a resume finds it from anywhere.
    base = spec.label or (loaded.source if loaded.local else spec.name)
    return loaded, base, ModelKind.FINE_TUNED


def _memorisation(
    context: RunContext, model_dir: Path, params: TrainParams, corpus: Corpus, block_size: int
) -> Memorisation | None:
    if not params.memorisation_samples:
        return None
    settings = context.settings
    spec = ModelSpec(str(model_dir), device=settings.device, dtype=settings.dtype)
    loaded = load_model(spec, share=False)
    return check_memorisation(
        loaded,
        corpus.train,
        params.memorisation_samples,
        params.memorisation_limit,
        block_size,
        corpus.chat,
    )


def _reason(exc: BaseException) -> str:
    if interrupted(exc):  # Ctrl-C, or the error it caused (Prefect's server stopped with it)
        return INTERRUPTED
    return str(exc) or type(exc).__name__
