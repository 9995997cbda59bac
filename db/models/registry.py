"""The model registry: every model that wrote an article or was trained here, with its
provenance (base, revision, corpus, hyperparameters) and, for trained ones, how training went."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from articlegen.core.bounds import MAX_NAME
from articlegen.db.models.base import Base, JSONType, str_enum, utcnow

__all__ = ["ModelKind", "ModelStatus", "RegisteredModel"]


class ModelKind(enum.StrEnum):
    """Where a registered model came from."""

    HUB = "hub"  # a Hugging Face Hub id, at a commit
    LOCAL = "local"  # a directory of someone else's making
    FINE_TUNED = "fine_tuned"  # trained here from a base model
    FROM_SCRATCH = "from_scratch"  # trained here from random weights
    # Random weights never trained (`articlegen models init`): its text is noise, and every
    # article it writes says so.
    RANDOM = "random"


class ModelStatus(enum.StrEnum):
    """Whether a registered model can write articles."""

    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"


class RegisteredModel(Base):
    """A model by its name: what `--model NAME` and ARTICLEGEN_MODEL=NAME resolve first."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    kind: Mapped[ModelKind] = mapped_column(str_enum(ModelKind, "model_kind"))
    # What the loader opens: a Hub id or a directory.
    source: Mapped[str] = mapped_column(String(1000))
    # Hub commit, or sha256 of the directory's files: the weights that wrote an article.
    revision: Mapped[str | None] = mapped_column(String(100))
    base: Mapped[str | None] = mapped_column(String(1000))
    base_revision: Mapped[str | None] = mapped_column(String(100))
    corpus_hash: Mapped[str | None] = mapped_column(String(64))
    # Documents and tokens, for training and evaluation, and where they came from.
    corpus: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # One entry per finished epoch: eval loss and perplexity, train loss.
    epochs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    best_epoch: Mapped[int | None]
    # The longest run of tokens samples repeat verbatim from the training corpus.
    memorisation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # While training: steps done and planned, for the CLI's progress bar.
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ModelStatus] = mapped_column(
        str_enum(ModelStatus, "model_status"), default=ModelStatus.READY
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
