"""A training run's parameters, typed and checked once where they enter (CLI, flow, UI).

The defaults are the recipe of the method articlegen comes from, found best for GPT and GPT-2:
AdamW at 5e-5, a linear schedule with 200 warm-up steps, 5 epochs (more overfit), gradient
accumulation over 32 steps, gradient norm clipped at 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = ["MODEL_NAME_PATTERN", "TrainParams"]

# A registry name is also a directory name and a command-line word: no slash (so it never
# reads as a path or a Hub id), no leading dot.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class TrainParams(BaseModel):
    """What one `fine-tune-model` run trains, on what, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=MODEL_NAME_PATTERN,
        description="The new model's registry name: letters, digits, '.', '_', '-'; at most 100.",
    )
    base: str | None = Field(
        default=None,
        max_length=1000,
        description="Model to fine-tune: a registry name, Hub id or directory "
        "[default: ARTICLEGEN_MODEL].",
    )
    from_scratch: bool = Field(
        default=False,
        description="Start from random weights and a tokenizer trained on the corpus.",
    )
    size: Literal["tiny", "mini", "small"] | None = Field(
        default=None,
        description="Shape of a model trained from scratch: GPT-2 small's, mini (4 layers, "
        "192 wide) or tiny [default: small].",
    )
    corpus: list[Path] = Field(
        default_factory=list,
        max_length=100,
        description="Documents to train on: .txt (split at <|endoftext|> lines, else at blank "
        'lines), .csv (a `text` column) or .jsonl (a "text" field); repeatable.',
    )
    from_approved: bool = Field(default=False, description="Train on approved articles.")
    tags: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Only approved articles whose prompt has this tag; repeatable.",
    )
    since: AwareDatetime | None = Field(
        default=None,
        description="Only articles approved at or after this time (ISO 8601: 2026-11-30 or "
        "2026-11-30T14:00; UTC unless it names a zone).",
    )
    epochs: int = Field(default=5, ge=1, le=1000, description="Passes over the training set.")
    learning_rate: float = Field(
        default=5e-5, gt=0, le=1, allow_inf_nan=False, description="AdamW's peak rate."
    )
    warmup_steps: int = Field(
        default=200, ge=0, le=1_000_000, description="Linear warm-up, in optimizer steps."
    )
    grad_accum: int = Field(
        default=32, ge=1, le=4096, description="Batches summed into one optimizer step."
    )
    max_grad_norm: float = Field(
        default=1.0, gt=0, le=1e6, allow_inf_nan=False, description="Gradient clipping."
    )
    batch_size: int = Field(default=1, ge=1, le=1024, description="Blocks per forward pass.")
    block_size: int | None = Field(
        default=None,
        ge=8,
        le=32_768,
        description="Tokens per training block [default: the model's context, at most 1,024].",
    )
    eval_fraction: float = Field(
        default=0.1,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="Share of the documents held out for evaluation.",
    )
    patience: int = Field(
        default=2,
        ge=0,
        le=1000,
        description="Stop after this many epochs without a better eval loss (0: never stop early).",
    )
    # NumPy, which the trainer seeds too, takes seeds below 2**32.
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Seeds weights and order.")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory, slower.",
    )
    memorisation_samples: int = Field(
        default=8, ge=0, le=1000, description="Samples the memorisation check writes (0: skip)."
    )
    memorisation_limit: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Flag the model when a sample repeats this many training tokens verbatim.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.from_scratch and self.base is not None:
            raise ValueError("choose --base or --from-scratch, not both")
        if self.size is not None and not self.from_scratch:
            raise ValueError("--size shapes a model trained from scratch: add --from-scratch")
        if not self.corpus and not self.from_approved:
            raise ValueError(
                "nothing to train on: give --corpus FILE (repeatable) and/or --from-approved"
            )
        if (self.tags or self.since is not None) and not self.from_approved:
            raise ValueError("--tag and --since choose approved articles: add --from-approved")
        return self
