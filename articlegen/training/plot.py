"""The loss curve of a training run, as a PNG next to the model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_losses"]


def plot_losses(epochs: Sequence[dict[str, Any]], best: int | None, path: Path, title: str) -> Path:
    """Eval loss per epoch (0: before training) and train loss, with the best epoch marked."""
    # Imported here, with a file-only backend: a server has no display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    evaluated = [e for e in epochs if e.get("eval_loss") is not None]
    axes.plot(
        [e["epoch"] for e in evaluated], [e["eval_loss"] for e in evaluated], "o-", label="eval"
    )
    trained = [e for e in epochs if e.get("train_loss") is not None]
    if trained:
        axes.plot(
            [e["epoch"] for e in trained], [e["train_loss"] for e in trained], "s--", label="train"
        )
    kept = [e for e in evaluated if e["epoch"] == best]
    if kept:
        axes.annotate(
            "best",
            (kept[0]["epoch"], kept[0]["eval_loss"]),
            textcoords="offset points",
            xytext=(0, 10),
            ha="center",
        )
    axes.set_xlabel("epoch (0: before training)")
    axes.set_ylabel("loss (nats per token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
