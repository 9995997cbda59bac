"""The trainer callback that keeps the registry row current as training goes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from articlegen.core.errors import ModelError
from articlegen.db import registry
from articlegen.runs.context import RunContext

__all__ = ["ProgressHook", "Recorder"]

# Called with (optimizer steps done, steps planned) as training goes.
ProgressHook = Callable[[int, int], None]
# Progress is written to the registry at most this often (a step of a tiny model takes ms).
_PROGRESS_SECONDS = 1.0


class Recorder(TrainerCallback):
    """Writes progress and each epoch's evaluation to the registry row."""

    def __init__(self, context: RunContext, name: str, hook: ProgressHook | None) -> None:
        self.context, self.name, self.hook = context, name, hook
        self._last = 0.0
        self.epochs_here = 0  # epochs trained in this process

    def has_epoch(self, epoch: int) -> bool:
        with self.context.database.session(write=False) as session:
            return any(e["epoch"] == epoch for e in registry.get_model(session, self.name).epochs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._last >= _PROGRESS_SECONDS or state.global_step == state.max_steps:
            self._last = now
            with self.context.database.session() as session:
                registry.record_progress(session, self.name, state.global_step, state.max_steps)
            if self.hook is not None:
                self.hook(state.global_step, state.max_steps)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics: dict[str, float] = kwargs["metrics"]
        epoch = round(state.epoch or 0)
        if not math.isfinite(metrics["eval_loss"]):
            raise ModelError(
                f"the eval loss is {metrics['eval_loss']} after epoch {epoch}: training diverged; "
                "train again with a lower --lr, or ARTICLEGEN_DTYPE=float32 if it ran in fp16"
            )
        self.epochs_here += epoch > 0
        losses = [
            e["loss"] for e in state.log_history if "loss" in e and round(e["epoch"]) == epoch
        ]
        record = {
            "epoch": epoch,
            "step": state.global_step,
            "eval_loss": metrics["eval_loss"],
            "eval_perplexity": math.exp(min(metrics["eval_loss"], 700.0)),
            # JSON has no NaN (PostgreSQL's jsonb refuses it): a non-finite one is unknown.
            "train_loss": losses[-1] if losses and epoch and math.isfinite(losses[-1]) else None,
        }
        with self.context.database.session() as session:
            registry.record_epoch(session, self.name, record)
