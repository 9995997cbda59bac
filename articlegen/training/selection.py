"""Which documents a run trains on, and which parameters a resumed run continues with.

A resume must see what the run started with: the same parameters (stored in the registry row)
and the very same documents, checked by the corpus hash.
"""

from __future__ import annotations

from typing import Any

from articlegen.core.errors import InputError
from articlegen.db import registry
from articlegen.db.articles import approved_texts
from articlegen.db.models import ModelKind, ModelStatus
from articlegen.runs.context import RunContext
from articlegen.training.corpus import Corpus, Document, build_corpus, from_articles, read_files
from articlegen.training.params import TrainParams

__all__ = ["check_new_name", "select_corpus", "stored_params"]


def check_new_name(context: RunContext, name: str) -> None:
    """`InputError` unless `name` is free for a new model: not in the registry, and not the
    default model it would take the place of."""
    with context.database.session(write=False) as session:
        row = registry.find_model(session, name)
    if row is not None and row.kind in (ModelKind.HUB, ModelKind.LOCAL, ModelKind.RANDOM):
        raise InputError(
            f"{name!r} already names the {row.kind} model {row.source} in the registry: choose "
            "another name"
        )
    if row is not None and row.status is ModelStatus.READY:
        raise InputError(
            f"there is already a model called {name!r}: choose another name, or remove it "
            f"first with `articlegen models rm {name}`"
        )
    if row is not None:
        raise InputError(
            f"there is already a model called {name!r} ({row.status}): choose another name, "
            f"or continue its training with `articlegen train {name} --resume`"
        )
    if name == context.settings.model:
        raise InputError(
            f"{name!r} is ARTICLEGEN_MODEL, the model every run uses by default: a trained model "
            "of that name would take its place; choose another name"
        )


def select_corpus(context: RunContext, params: TrainParams, resume: bool) -> Corpus:
    """The run's documents; on a resume, the very documents it started with."""
    documents: list[Document] = read_files(params.corpus)
    stored: dict[str, Any] = {}
    if resume:
        with context.database.session(write=False) as session:
            row = registry.get_model(session, params.name)
            stored, stored_hash = dict(row.corpus), row.corpus_hash
    if params.from_approved:
        with context.database.session(write=False) as session:
            articles = approved_texts(session, params.tags, params.since)
        if resume:
            kept = _expand(stored.get("article_ids", ""))
            articles = [a for a in articles if a.article_id in kept]
        if not articles:
            raise InputError(_no_articles(params))
        documents += from_articles(articles)
    corpus = build_corpus(documents, params.eval_fraction)
    if resume and corpus.hash != stored_hash:
        raise InputError(
            f"the documents of {params.name!r} changed since its training began (a corpus file "
            "was edited, an approved article edited or un-approved, or an upgrade of articlegen "
            "reads them otherwise, as when approved chat-form articles began to train as "
            "conversations): a resumed run must see the same documents; train a new model under "
            "another name"
        )
    return corpus


def _no_articles(params: TrainParams) -> str:
    which = " approved articles"
    if params.tags:
        which += f" of prompts tagged {' or '.join(params.tags)}"
    if params.since:
        which += f" since {params.since.isoformat(timespec='seconds')}"
    return (
        f"no{which}: approve some in the review workspace (`articlegen web`) or with "
        "`articlegen review approve ID`, widen --tag/--since, or train on --corpus FILE"
    )


def _expand(ranges: str) -> set[int]:
    """The ids of `1-3, 7`."""
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in ranges.split(","))):
        first, _, last = part.partition("-")
        ids.update(range(int(first), int(last or first) + 1))
    return ids


def stored_params(context: RunContext, name: str) -> TrainParams:
    """The parameters the run called `name` started with: a resume continues it as it was."""
    with context.database.session(write=False) as session:
        row = registry.get_model(session, name)
        if row.status is ModelStatus.READY:
            raise InputError(
                f"model {name!r} finished training: nothing to resume (generate with it: "
                f"`articlegen generate --model {name}`)"
            )
        if row.kind not in (ModelKind.FINE_TUNED, ModelKind.FROM_SCRATCH):
            raise InputError(f"model {name!r} was not trained here: nothing to resume")
        stored = dict(row.hyperparameters)
    fields = TrainParams.model_fields
    return TrainParams(name=name, **{k: v for k, v in stored.items() if k in fields})
