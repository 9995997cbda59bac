"""The starter model: a small GPT-2 trained from scratch on English that every machine running
articlegen already has, for the demo where no real model can be had.

The English is Python's own documentation, as every Python installation ships it: the
reference topics behind `help()` (`pydoc_data.topics`) and the docstrings of the standard
library, both under the PSF License 2.0. Only paragraphs of prose are kept (no code, no
grammar, no tables), each source becoming one document headed by a title line, the shape of
an article. It is technical English, so the model writes English words and phrases about
programming whatever the topic: enough to see the product work end to end, not articles.

`prepare_starter` decides what the demo does with it: reuse the registered model, continue a
run that stopped, or train it (again), clearing what an earlier attempt left behind. A
`demo-english` the demo did not train is never touched.
"""

from __future__ import annotations

import ast
import re
import shutil
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from articlegen.core.errors import InputError
from articlegen.db import registry
from articlegen.db.models import ModelKind, ModelStatus, RegisteredModel
from articlegen.runs.context import RunContext
from articlegen.training.params import TrainParams
from articlegen.training.store import model_directory, remove_model, running

__all__ = [
    "CORPUS_NAME",
    "DEMO_RECIPE",
    "STARTER_NAME",
    "StarterPlan",
    "StarterRecipe",
    "prepare_starter",
    "python_docs",
    "write_corpus",
]

STARTER_NAME = "demo-english"
CORPUS_NAME = "Python's documentation (pydoc topics and standard-library docstrings, PSF License)"
# Where the corpus is written, under ARTICLEGEN_MODELS_DIR; a resume reads it again.
_CORPUS_FILE = Path(".corpora") / "python-docs.txt"
# What a training leaves in a model's directory: anything else there is not ours to delete.
_TRAINING_OUTPUT = {"init", "model", "checkpoints", "loss.png"}

# A paragraph is prose when nearly all its words are plain words: code, signatures, tables
# and identifiers (`__init__`, `os.path`) fail it.
_WORD = re.compile(r"^[\"'(]?[A-Za-z][a-z]*(?:'[a-z]+)?[\"')]?[.,;:!?]?[\"')]?$")
_PROSE_SHARE = 0.9
_MIN_WORDS = 12
# Standard-library parts that are tests, demos or vendored code rather than documentation.
_SKIPPED = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "turtledemo"}


@dataclass(frozen=True)
class StarterRecipe:
    """How much to train and on how much: sized so the whole demo stays within minutes on two
    cores. The seed's fine-tuning recipe (lr 5e-5, 32 batches a step) would barely move random
    weights in that time; a model learning from nothing needs a larger rate and many steps."""

    size: Literal["tiny", "mini", "small"] = "mini"
    documents: int | None = None  # the first N documents only (tests); None: all of them
    # Measured here, for two epochs (eval perplexity, seconds of training on two cores): 192
    # wide over batches of 8 blocks at 1.5e-3, 255 in 88-102 s; 256 wide at 1e-3, 230 in
    # 104-120 s, or over batches of 4 at 2e-3, 188 in 130 s. The first keeps a fresh clone's
    # `make demo`, installation included, well under 5 minutes.
    epochs: int = 2
    learning_rate: float = 1.5e-3
    # Well within a tenth of the run on any recent Python's corpus (the 182 steps on 3.11, 168
    # on 3.12), so the warm-up is never cut with a warning about a flag nobody typed.
    warmup_steps: int = 10
    batch_size: int = 8
    block_size: int = 256
    memorisation_samples: int = 4

    def params(self, corpus: Path) -> TrainParams:
        """The training run for `corpus`."""
        return TrainParams(
            name=STARTER_NAME,
            from_scratch=True,
            size=self.size,
            corpus=[corpus],
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps,
            grad_accum=1,
            batch_size=self.batch_size,
            block_size=self.block_size,
            eval_fraction=0.05,
            patience=0,  # a run this short is still improving when it ends
            memorisation_samples=self.memorisation_samples,
        )


# About two minutes of training on two cores (the README has the measured run).
DEMO_RECIPE = StarterRecipe()


@dataclass(frozen=True)
class StarterPlan:
    """What the demo does: `reuse` the ready model, `resume` its stopped run, or `train` it
    with `params`; `note` says why, when there is more to say than that."""

    action: Literal["reuse", "resume", "train"]
    params: TrainParams | None = None
    note: str | None = None


def prepare_starter(context: RunContext, recipe: StarterRecipe = DEMO_RECIPE) -> StarterPlan:
    """Decide how the demo gets its starter model, and make way for it: remove a row whose
    files are gone or whose corpus is, and files no row accounts for; write the corpus."""
    settings = context.settings
    if running(settings, STARTER_NAME):
        raise InputError(
            f"another process is training {STARTER_NAME} right now (another `make demo`?): wait "
            "for it to finish, then run the demo again"
        )
    corpus = (settings.models_dir / _CORPUS_FILE).resolve()
    with context.database.session(write=False) as session:
        row = registry.find_model(session, STARTER_NAME)
        if row is not None:
            session.expunge(row)
    note = None
    if row is not None:
        _check_ours(row)
        source, here = Path(row.source), model_directory(settings, STARTER_NAME) / "model"
        if row.status is ModelStatus.READY and source != here and _has_weights(here):
            # The project was moved or copied: the row still names the old place.
            with context.database.session() as session:
                registry.get_model(session, STARTER_NAME).source = str(here)
            return StarterPlan("reuse", note=f"Using {STARTER_NAME} from {here}, where it is now.")
        if row.status is ModelStatus.READY and _has_weights(source):
            return StarterPlan("reuse")
        if row.status is not ModelStatus.READY and corpus.is_file():
            return StarterPlan(
                "resume", note=f"Continuing the training of {STARTER_NAME} that stopped."
            )
        gone = "its weights are" if row.status is ModelStatus.READY else "its corpus is"
        note = f"{STARTER_NAME}'s row is in the registry but {gone} gone: training it again."
        remove_model(context, STARTER_NAME)
    directory = model_directory(settings, STARTER_NAME)
    if directory.exists():
        note = note or (
            f"{directory} holds a starter model this database has no record of (its database "
            "was deleted?): training it again."
        )
        _clear(directory)
    try:
        documents = write_corpus(corpus, recipe.documents)
    except OSError as exc:
        raise InputError(
            f"cannot write the demo's corpus to {corpus}: {exc.strerror}; make "
            "ARTICLEGEN_MODELS_DIR a directory you can write to"
        ) from exc
    training = (
        f"{STARTER_NAME} is trained once, on {documents} documents of {CORPUS_NAME}; later "
        "runs reuse it (Ctrl-C stops it; the next demo continues it)."
    )
    note = f"{note}\n{training}" if note else training
    return StarterPlan("train", recipe.params(corpus), note)


def _check_ours(row: RegisteredModel) -> None:
    """`InputError` unless the row is the demo's own: trained from scratch on its corpus."""
    files = [str(f) for f in row.hyperparameters.get("corpus", [])]
    ours = (
        row.kind is ModelKind.FROM_SCRATCH
        and files
        and all(f.endswith(str(_CORPUS_FILE)) for f in files)
    )
    if not ours:
        raise InputError(
            f"the registry has a model called {STARTER_NAME!r} that the demo did not train "
            f"({row.kind.value}, {row.source}): set ARTICLEGEN_MODEL to the model the demo "
            f"should use, or remove that one with `articlegen models rm {STARTER_NAME}`"
        )


def _has_weights(source: Path) -> bool:
    return (source / "config.json").is_file() and any(source.glob("*.safetensors"))


def _clear(directory: Path) -> None:
    """Delete what a starter training left in `directory`, and nothing else."""
    found = {p.name for p in directory.iterdir()} if directory.is_dir() else {"?"}
    if not found <= _TRAINING_OUTPUT:
        raise InputError(
            f"{directory} is in the way of the demo's model and holds files a training did not "
            f"write: move it elsewhere, or set ARTICLEGEN_MODELS_DIR to another directory"
        )
    try:
        shutil.rmtree(directory)
    except OSError as exc:
        raise InputError(f"cannot remove {directory}: {exc.strerror}; delete it by hand") from exc


def write_corpus(path: Path, documents: int | None = None) -> int:
    """Write the corpus to `path` (a `.txt` of documents separated by `<|endoftext|>` lines),
    at most `documents` of them; the number written."""
    docs = list(python_docs())[:documents]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n<|endoftext|>\n".join(docs) + "\n", encoding="utf-8")
    return len(docs)


def python_docs() -> Iterator[str]:
    """The documents, in a fixed order: each pydoc topic, then each standard-library module."""
    # Imported here: 750 KB of strings that only the starter's first run needs.
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield from _document(key.replace("-", " ").capitalize(), [topics[key]])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for source in sorted(stdlib.rglob("*.py")):
        parts = source.relative_to(stdlib).parts
        if _SKIPPED.intersection(parts):
            continue
        module = ".".join(parts).removesuffix(".py").removesuffix(".__init__")
        yield from _document(f"The {module} module", _docstrings(source))


def _document(title: str, texts: list[str]) -> Iterator[str]:
    paragraphs = [p for text in texts for p in _prose(text)]
    if paragraphs:
        yield "\n\n".join([title, *paragraphs])


def _docstrings(source: Path) -> list[str]:
    try:
        tree = ast.parse(source.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []  # a file this Python cannot parse teaches nothing either way
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = (ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, nodes))
    return [d for d in found if d]


def _prose(text: str) -> Iterator[str]:
    """The paragraphs of `text` that are prose, each on one line."""
    for paragraph in re.split(r"\n[ \t]*\n", text):
        lines = paragraph.strip("\n").split("\n")
        if any(line[:1] in (" ", "\t") for line in lines):
            continue  # indented: code, a literal block, a table
        words = " ".join(line.strip() for line in lines).split()
        if len(words) < _MIN_WORDS:
            continue
        if sum(bool(_WORD.match(w)) for w in words) >= _PROSE_SHARE * len(words):
            yield " ".join(words)
