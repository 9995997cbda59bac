"""The run context: what every batch of every run in a process shares, built once.

The database (one engine and pool), the presets, the template environment, the loaded models,
their writers and key/value cache budgets, and the decoding configuration of each preset and
overrides combination (validated once, with its warnings) all live here. A context is made per
process and per settings on first use (`context_for`) and reused by every step of every run;
presets or templates edited meanwhile take effect in the next process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from articlegen.core.errors import ModelError
from articlegen.core.settings import Settings
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.db.registry import find_model
from articlegen.db.session import Database
from articlegen.generator.decoding import DecodingOverrides, Resolved
from articlegen.generator.presets import PresetCatalog, load_presets
from articlegen.generator.templates import RenderLimits, Templates

if TYPE_CHECKING:
    from articlegen.generator.articles import ArticleWriter
    from articlegen.generator.loading import LoadedModel, ModelSpec

__all__ = ["RunContext", "close_contexts", "context_for"]

T = TypeVar("T")

# Models registered when they first wrote an article, not by a training here.
_AS_GIVEN = (ModelKind.HUB, ModelKind.LOCAL, ModelKind.RANDOM)


@dataclass(eq=False)
class RunContext:
    """Shared by the steps of the runs of one process with one set of settings.

    Each part is built on first use, so a command that only lists jobs never loads presets,
    templates or a model. Thread-safe: the lease heartbeat shares the database.
    """

    settings: Settings
    _parts: dict[Any, Any] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def _once(self, key: Any, build: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._parts:
                self._parts[key] = build()
            value: T = self._parts[key]
            return value

    @property
    def database(self) -> Database:
        """The application database, opened (and migrated) once."""
        return self._once("database", lambda: Database.open(self.settings.database_url))

    @property
    def presets(self) -> PresetCatalog:
        """The bundled presets and ARTICLEGEN_PRESETS_FILE's, read once."""
        return self._once("presets", lambda: load_presets(self.settings.presets_file))

    @property
    def templates(self) -> Templates:
        """The one sandboxed template environment."""
        limits = RenderLimits(self.settings.template_seconds, self.settings.template_max_chars)
        return self._once("templates", lambda: Templates(self.settings.templates_dir, limits))

    def model_spec(self, model: str | None = None) -> ModelSpec:
        """The model a run uses: `model`, else ARTICLEGEN_MODEL, with the device settings.

        The name of a model trained here resolves first, to its directory; one still
        training, or whose training failed, is refused with what to do.
        """
        # Imported here: generator.loading imports torch, which most commands never need.
        from articlegen.generator.loading import ModelSpec

        settings = self.settings
        name = model or settings.model
        with self.database.session(write=False) as session:
            row = find_model(session, name)
            if row is None or (row.kind in _AS_GIVEN and "@" not in row.name):
                # Hub and local models get a row when they first write an article, as a record
                # of what wrote it; they load as given, so "gpt2" follows
                # ARTICLEGEN_MODEL_REVISION and "./models/local" the working directory.
                return ModelSpec(name, settings.model_revision, settings.device, settings.dtype)
            if row.kind in _AS_GIVEN:
                # `gpt2@<commit>`, the row of an earlier revision: that revision, on the Hub.
                revision = row.revision if row.kind is ModelKind.HUB else None
                return ModelSpec(
                    row.source, revision, settings.device, settings.dtype, label=row.name
                )
            if row.status is ModelStatus.TRAINING:
                raise ModelError(
                    f"model {name!r} is still training, or its training stopped: wait for it, "
                    f"or continue it with `articlegen train {name} --resume`"
                )
            if row.status is ModelStatus.FAILED:
                raise ModelError(
                    f"model {name!r} failed to train ({row.error}): continue it with "
                    f"`articlegen train {name} --resume`, or remove it with "
                    f"`articlegen models rm {name}`"
                )
            return ModelSpec(row.source, None, settings.device, settings.dtype, label=row.name)

    def model(self, model: str | None = None) -> LoadedModel:
        """The loaded model (`generator.loading` keeps one per process and spec)."""
        from articlegen.generator.loading import load_model

        return load_model(self.model_spec(model))

    def cache_tokens(self, loaded: LoadedModel) -> int:
        """The key/value cache budget of one batch with `loaded`, measured once."""
        from articlegen.generator.batching import cache_tokens

        return self._once(
            ("cache_tokens", loaded.name, loaded.revision),
            lambda: cache_tokens(loaded, self.settings.kv_cache_mb),
        )

    def writer(self, loaded: LoadedModel, batch_size: int) -> ArticleWriter:
        """The article writer (engine and templates) for `loaded` at `batch_size`."""
        from articlegen.generator.articles import ArticleWriter
        from articlegen.generator.engine import Engine

        def build() -> ArticleWriter:
            engine = Engine(loaded, batch_size=batch_size, cache_tokens=self.cache_tokens(loaded))
            return ArticleWriter(engine, self.templates)

        return self._once(("writer", loaded.name, loaded.revision, batch_size), build)

    def drop_carried(self) -> None:
        """Free what the writers' engines keep between a run's batches (`Engine.generate`'s
        `ahead`), once the run is over. A run still going on in this process only starts its
        next batch afresh."""
        with self._lock:
            writers = [
                p for k, p in self._parts.items() if isinstance(k, tuple) and k[0] == "writer"
            ]
        for writer in writers:
            writer.engine.drop_carried()

    def decoding(self, preset: str | None, *layers: DecodingOverrides) -> Resolved:
        """The validated configuration of `layers` over `preset`, with its warnings; checked
        once per combination. Raises `ConfigError`."""
        key = ("decoding", preset, *(json.dumps(x.settings(), sort_keys=True) for x in layers))
        return self._once(key, lambda: self.presets.resolve_with_warnings(preset, *layers))

    def close(self) -> None:
        """Close the database, if it was opened."""
        with self._lock:
            database = self._parts.pop("database", None)
        if database is not None:
            database.close()


_contexts: dict[Settings, RunContext] = {}
_contexts_lock = threading.Lock()


def context_for(settings: Settings) -> RunContext:
    """This process's context for `settings`, made on first use."""
    with _contexts_lock:
        if settings not in _contexts:
            _contexts[settings] = RunContext(settings)
        return _contexts[settings]


def close_contexts() -> None:
    """Close every context's database and forget them (end of a worker, or of a test)."""
    with _contexts_lock:
        contexts = list(_contexts.values())
        _contexts.clear()
    for context in contexts:
        context.close()
