"""A local model directory checked file by file before it is loaded, and what loading it
reports turned into one error naming the file at fault.

transformers reports a damaged directory in its own words, or not at all: a truncated weights
file surfaces as "invalid header length" from the safetensors reader, a tokenizer file cut short
as a JSON error that names no file, and a config.json whose sizes no longer match the weights
loads a model whose mismatched or missing parameters are drawn at random, with a report logged
and nothing raised. Here each of those is caught where it can be told, named, and refused.
"""

from __future__ import annotations

import json
import logging
import pickle
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from articlegen.core.errors import ModelError

__all__ = [
    "RESAVE",
    "WEIGHT_ERRORS",
    "check_model_directory",
    "check_weights_match",
    "is_damaged_archive",
    "quiet_load_report",
    "weights_message",
]

_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# JSON files of a model directory are read whole to check them; past this size a file is not
# one of a model's small JSON files (configs, vocabularies, tokenizers) but something else.
_MAX_JSON_BYTES = 256 << 20
# What reading damaged weights raises: safetensors' reader, torch.load on a damaged pickle, or
# a short file. (A damaged zip archive raises RuntimeError: `is_damaged_archive` tells it from
# the RuntimeErrors that are not the file's fault, such as running out of memory.)
WEIGHT_ERRORS: tuple[type[Exception], ...] = (SafetensorError, pickle.UnpicklingError, EOFError)
RESAVE = (
    "the file is damaged or was cut short in copying; copy the model again, or save it again "
    "with `model.save_pretrained(DIR)`"
)


def check_model_directory(name: str, path: Path) -> None:
    """`ModelError` naming the first thing that keeps `path` from being a loadable model:
    not a directory, no tokenizer, no config, no weights, a JSON file that does not parse, a
    weights file that is empty or shorter than its own header says."""
    if path.exists() and not path.is_dir():
        raise ModelError(
            f"{name} is a file, not a model directory: give a directory holding a model "
            "(config.json, the weights and the tokenizer), a Hub id, or a registry name"
        )
    if not path.is_dir():
        raise ModelError(
            f"model directory {name} does not exist: check ARTICLEGEN_MODEL, or create one with "
            f"`articlegen models init {name}`"
        )
    if not any((path / f).exists() for f in _TOKENIZER_FILES):
        raise ModelError(
            f"model directory {name} has no tokenizer (tokenizer.json, vocab.json or "
            "tokenizer.model): save the tokenizer next to the weights with "
            "`tokenizer.save_pretrained(DIR)`"
        )
    for file in sorted(path.glob("*.json")):
        _check_json(name, file)
    if not (path / "config.json").is_file():
        raise ModelError(
            f"model directory {name} has no config.json: save the model with "
            "`model.save_pretrained(DIR)`, which writes it beside the weights"
        )
    for weights in _weights_files(name, path):
        _check_weights(name, weights)


def _check_json(name: str, file: Path) -> None:
    try:
        if not file.is_file():
            raise ModelError(f"model directory {name}: {file.name} is not a regular file")
        size = file.stat().st_size
        if size > _MAX_JSON_BYTES:
            raise ModelError(
                f"model directory {name}: {file.name} is {size >> 20} MiB, too large for a "
                "model's JSON file: remove it from the directory"
            )
        json.loads(file.read_bytes())
    except OSError as exc:
        raise ModelError(
            f"model directory {name}: cannot read {file.name}: {exc.strerror}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else "not UTF-8"
        )
        what = "empty" if file.stat().st_size == 0 else f"not valid JSON ({where})"
        raise ModelError(f"model directory {name}: {file.name} is {what}: {RESAVE}") from None


def _weights_files(name: str, path: Path) -> list[Path]:
    """The weights files the loader will read: a single file, or the shards an index names."""
    for index in _INDEXES:
        if (path / index).is_file():
            data: Any = json.loads((path / index).read_bytes())  # parsed above
            shards = sorted(set((data.get("weight_map") or {}).values()))
            missing = [s for s in shards if not (path / s).is_file()]
            if missing or not shards:
                raise ModelError(
                    f"model directory {name}: {index} names shards that are not there "
                    f"({', '.join(missing[:3]) or 'none at all'}): copy the whole model again"
                )
            return [path / s for s in shards]
    found = [path / w for w in _WEIGHTS if (path / w).is_file()]
    if not found:
        raise ModelError(
            f"model directory {name} has no weights (model.safetensors or pytorch_model.bin): "
            "save the model with `model.save_pretrained(DIR)`"
        )
    return found[:1]  # the loader prefers safetensors, as listed


def _check_weights(name: str, file: Path) -> None:
    try:
        size = file.stat().st_size
        if size == 0:
            raise ModelError(f"model directory {name}: {file.name} is empty (0 bytes): {RESAVE}")
        if file.suffix != ".safetensors":
            return  # a pickle: only torch.load can tell, and its errors are wrapped
        # A safetensors file is an 8-byte header length, a JSON header giving each tensor's
        # byte range, then the bytes: a file shorter than its header says was cut short.
        with file.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
            if length is None or length > size - 8:
                raise ModelError(
                    f"model directory {name}: {file.name} is not a safetensors file, or was cut "
                    f"short: its header does not fit in its {size:,} bytes: {RESAVE}"
                )
            header = json.loads(handle.read(length))
    except OSError as exc:
        raise ModelError(
            f"model directory {name}: cannot read {file.name}: {exc.strerror}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(
            f"model directory {name}: {file.name} has a damaged header: {RESAVE}"
        ) from None
    ends = [
        int(t["data_offsets"][1])
        for key, t in header.items()
        if key != "__metadata__" and isinstance(t, dict) and "data_offsets" in t
    ]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise ModelError(
            f"model directory {name}: {file.name} is cut short: it has {size:,} bytes of the "
            f"{needed:,} its header describes: {RESAVE}"
        )


def is_damaged_archive(exc: RuntimeError) -> bool:
    """Whether torch.load failed on the file itself (a zip archive cut short or damaged)."""
    return "PytorchStreamReader" in str(exc) or "zip archive" in str(exc)


def weights_message(name: str, exc: BaseException, directory: Path | None = None) -> str:
    """The message for weights the loader could not read (`WEIGHT_ERRORS`), naming the weights
    files when they are in a local `directory`."""
    text = str(exc).strip()
    reason = text.splitlines()[0][:200] if text else type(exc).__name__
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own message advises loading with weights_only=False, which runs whatever
        # code the file holds: not advice to pass on for a file that may not be what it says.
        reason = "torch.load cannot read it as tensors (a damaged file, or not weights at all)"
    files = ""
    if directory is not None:
        found = [p.name for p in (directory / w for w in (*_WEIGHTS, *_INDEXES)) if p.is_file()]
        files = f" ({', '.join(found)})" if found else ""
    return f"cannot load the weights{files} of model {name}: {reason}: {RESAVE}"


def check_weights_match(name: str, info: dict[str, Any], *, local: bool) -> None:
    """`ModelError` when the weights did not fill the model config.json describes: tensors of
    another shape, parameters the weights lack (they would be drawn at random), or, for a local
    directory, weights the model has no place for (a config.json with fewer layers)."""
    mismatched = info.get("mismatched_keys") or []
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or []) if local else []
    if mismatched:
        key, stored, expected = min(mismatched)  # the same example every time
        detail = (
            f"{len(mismatched)} tensors have another shape than config.json gives them, e.g. "
            f"{key}: {tuple(stored)} in the weights, {tuple(expected)} by config.json"
        )
    elif missing:
        detail = f"the weights lack {len(missing)} of the model's tensors, e.g. {missing[0]}"
    elif unexpected:
        detail = (
            f"the weights hold {len(unexpected)} tensors the model has no place for, e.g. "
            f"{unexpected[0]}"
        )
    else:
        return
    raise ModelError(
        f"model {name}: config.json does not match the weights ({detail}): restore the "
        "config.json saved with these weights, or save the model again with "
        "`model.save_pretrained(DIR)`"
    )


def _not_a_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Keep transformers' loading report (a table on stderr) quiet while a model loads: what it
    reports, `check_weights_match` turns into the one error the user reads.

    A filter, not a level: transformers runs extra checks, with warnings of their own, when
    this logger's level is set to WARNING or above."""
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(_not_a_load_report)
    try:
        yield
    finally:
        logger.removeFilter(_not_a_load_report)
