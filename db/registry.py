"""Model registry use cases: register, find, follow a training, list, remove.

A registry name is what `--model NAME` and ARTICLEGEN_MODEL=NAME resolve first. Models trained
here get their row when training starts; any other model gets one when it first writes an
article (`ensure_model`), so every article names the exact model row that wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_NAME
from articlegen.core.errors import InputError, NotFoundError
from articlegen.db.models import Article, ModelKind, ModelStatus, RegisteredModel, utcnow

# Rows one name may get (`name`, `name@rev`, `name@rev-2`, ...) before registering refuses.
_MOST_REVISIONS = 100

__all__ = [
    "articles_written",
    "ensure_model",
    "fail_training",
    "find_model",
    "finish_training",
    "get_model",
    "list_models",
    "record_epoch",
    "record_progress",
    "remove_model",
    "start_training",
]


def find_model(session: Session, name: str) -> RegisteredModel | None:
    """The registry row called `name`, if any."""
    return session.scalars(
        select(RegisteredModel).where(RegisteredModel.name == name)
    ).one_or_none()


def get_model(session: Session, name: str) -> RegisteredModel:
    """The registry row called `name`, or `NotFoundError`."""
    model = find_model(session, name)
    if model is None:
        raise NotFoundError(
            f"no model called {name!r} in the registry: `articlegen models list` shows them"
        )
    return model


def list_models(session: Session) -> list[RegisteredModel]:
    """Every registered model, newest first."""
    return list(session.scalars(select(RegisteredModel).order_by(RegisteredModel.id.desc())))


def ensure_model(
    session: Session, name: str, source: str, revision: str | None, kind: ModelKind
) -> RegisteredModel:
    """The row of the model called `name`, loaded from `source` at `revision`, made on first use.

    The row called `name` when it holds that revision (the same name at the same Hub commit or
    directory hash: the same weights); else the first row of that source and revision (the same
    weights under another name); else a new row, called `name`, or `name@<revision>` when `name`
    holds other weights (a Hub model at a new commit, a directory whose files changed).
    Another run registering the same model at the same moment is no error: its row is used.
    """
    named = find_model(session, name[:MAX_NAME])
    if named is not None and named.revision == revision:
        return named
    same = _same_weights(session, source, revision)
    if same is not None:
        return same
    suffix = "@" + (revision or "unknown").removeprefix("sha256:")[:12]
    for number in range(_MOST_REVISIONS):
        tail = "" if number == 0 else suffix if number == 1 else f"{suffix}-{number}"
        label = name[: MAX_NAME - len(tail)] + tail
        if find_model(session, label) is not None:
            continue
        try:
            with session.begin_nested():
                model = RegisteredModel(name=label, kind=kind, source=source, revision=revision)
                session.add(model)
            return model
        except IntegrityError:
            same = _same_weights(session, source, revision)
            if same is not None:
                return same  # another run registered it first
    raise InputError(f"model {name!r} has too many registered revisions: remove some")


def _same_weights(session: Session, source: str, revision: str | None) -> RegisteredModel | None:
    return session.scalars(
        select(RegisteredModel)
        .where(RegisteredModel.source == source, RegisteredModel.revision == revision)
        .order_by(RegisteredModel.id)
    ).first()


def start_training(
    session: Session,
    name: str,
    kind: ModelKind,
    source: str,
    base: str | None,
    base_revision: str | None,
    hyperparameters: Mapping[str, Any],
    corpus: Mapping[str, Any],
    corpus_hash: str,
) -> RegisteredModel:
    """A new row, `training`; `InputError` if the name is taken (resuming reuses the row)."""
    if find_model(session, name) is not None:
        raise InputError(
            f"there is already a model called {name!r}: choose another name, or resume its "
            f"training with `articlegen train {name} --resume`"
        )
    model = RegisteredModel(
        name=name,
        kind=kind,
        source=source,
        base=base,
        base_revision=base_revision,
        hyperparameters=dict(hyperparameters),
        corpus=dict(corpus),
        corpus_hash=corpus_hash,
        status=ModelStatus.TRAINING,
    )
    session.add(model)
    session.flush()
    return model


def record_progress(
    session: Session, name: str, step: int, steps: int, warnings: Sequence[str] | None = None
) -> None:
    """How far training has got, for the CLI's progress bar, and what its user should know as
    it starts (the warnings stay until new ones are given)."""
    model = get_model(session, name)
    kept = model.progress.get("warnings", []) if warnings is None else list(warnings)
    model.progress = {"step": step, "steps": steps, "warnings": kept}


def record_epoch(session: Session, name: str, epoch: dict[str, Any]) -> None:
    """A finished epoch's evaluation (replacing a record of the same epoch from before a
    resume)."""
    model = get_model(session, name)
    kept = [e for e in model.epochs if e.get("epoch") != epoch["epoch"]]
    model.epochs = sorted([*kept, epoch], key=lambda e: float(e["epoch"]))


def finish_training(
    session: Session,
    name: str,
    revision: str,
    best_epoch: int | None,
    memorisation: Mapping[str, Any],
) -> RegisteredModel:
    """Training ended well: the model is ready, at `revision`."""
    model = get_model(session, name)
    model.revision = revision
    model.best_epoch = best_epoch
    model.memorisation = dict(memorisation)
    model.status = ModelStatus.READY
    model.error = None
    model.finished_at = utcnow()
    return model


def fail_training(session: Session, name: str, error: str) -> None:
    """Training ended badly; the row keeps what it learned and says why."""
    model = find_model(session, name)
    if model is not None:
        model.status = ModelStatus.FAILED
        model.error = error
        model.finished_at = utcnow()


def articles_written(session: Session, model_id: int) -> int:
    """How many articles name the model."""
    query = select(func.count()).select_from(Article).where(Article.model_id == model_id)
    return int(session.scalar(query) or 0)


def remove_model(session: Session, name: str) -> RegisteredModel:
    """Delete the row (its articles keep `model_name` and `model_revision`)."""
    model = get_model(session, name)
    session.delete(model)
    session.flush()
    return model
