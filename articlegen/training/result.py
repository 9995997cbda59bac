"""What a finished training run produced and measured (light: no torch, so the flows and the
CLI can name it without importing the trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from articlegen.training.memorisation import Memorisation

__all__ = ["TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where its model is, each evaluation, the checks, the throughput."""

    name: str
    directory: Path
    epochs: list[dict[str, Any]]
    best_epoch: int | None
    stopped_early: bool
    memorisation: Memorisation | None
    corpus: dict[str, Any]
    warnings: list[str]
    train_tokens: int
    tokens_per_second: float
    seconds: float
    loss_curve: Path

    @property
    def best(self) -> dict[str, Any]:
        """The kept epoch's evaluation (the last one, should none be marked best)."""
        return next((e for e in self.epochs if e["epoch"] == self.best_epoch), self.epochs[-1])
