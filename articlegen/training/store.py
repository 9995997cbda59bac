"""Where trained models live on disk: one directory per name under ARTICLEGEN_MODELS_DIR
(weights in `model/`, checkpoints while training, the loss curve), a lock per name that keeps
one process on it at a time, and removal with its registry row."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from articlegen.core.errors import InputError
from articlegen.core.settings import Settings
from articlegen.db import registry
from articlegen.db.models import ModelKind
from articlegen.runs.context import RunContext

__all__ = ["Removed", "exclusive", "model_directory", "remove_model", "running"]

_TRAINED = (ModelKind.FINE_TUNED, ModelKind.FROM_SCRATCH)


def model_directory(settings: Settings, name: str) -> Path:
    """The directory a training of `name` writes to."""
    return (settings.models_dir / name).resolve()


@contextmanager
def exclusive(settings: Settings, name: str) -> Iterator[None]:
    """One process per model name at a time (training, resuming, removing): a lock the OS drops
    if the process dies.

    The lock files live apart, in `.locks/`: a file inside a model's directory would change the
    hash of a directory someone generates from.
    """
    lock = _lock_file(settings, name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        if not _take(handle):
            raise InputError(
                f"model {name!r} is being trained by another process right now: wait for it, or "
                "stop it first"
            )
        yield


def running(settings: Settings, name: str) -> bool:
    """Whether a process on this machine holds `name`'s lock (is training it right now).
    Asking creates nothing: no lock file means nobody ever held it."""
    lock = _lock_file(settings, name)
    if not lock.is_file():
        return False
    with lock.open("a") as handle:
        return not _take(handle)  # taken here, it is released as the file closes


def _lock_file(settings: Settings, name: str) -> Path:
    return settings.models_dir / ".locks" / f"{name}.lock"


def _take(handle: IO[str]) -> bool:
    """Take the lock on `handle`'s file without waiting; false when another process holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True)
class Removed:
    """What `remove_model` deleted: the row, the directory (trained models), and how many
    articles keep the model's name and revision but no longer link to a row. `kept` names a
    directory the row pointed at but that was not ours to delete."""

    name: str
    directory: Path | None
    articles: int
    kept: Path | None = None


def remove_model(context: RunContext, name: str) -> Removed:
    """Delete the registry row called `name`, and for a model trained here its directory."""
    with context.database.session(write=False) as session:
        row = registry.get_model(session, name)
        kind, source = row.kind, Path(row.source)
    if kind not in _TRAINED:
        return _remove_row(context, name, None)
    with exclusive(context.settings, name):
        directory = model_directory(context.settings, name)
        # Only the directory training gives this name: a row whose path says otherwise (models
        # moved, ARTICLEGEN_MODELS_DIR changed, a row edited by hand) leaves its files alone.
        ours = source == directory / "model" and directory.is_dir()
        removed = _remove_row(context, name, directory if ours else None)
        if not ours:
            return Removed(name, None, removed.articles, kept=source.parent)
        try:
            shutil.rmtree(directory)
        except OSError as exc:
            raise InputError(
                f"removed model {name!r} from the registry, but not all of {directory}: "
                f"{exc.strerror}; delete it by hand"
            ) from exc
    return removed


def _remove_row(context: RunContext, name: str, directory: Path | None) -> Removed:
    with context.database.session() as session:
        row = registry.get_model(session, name)
        articles = registry.articles_written(session, row.id)
        registry.remove_model(session, name)
    return Removed(name, directory, articles)
