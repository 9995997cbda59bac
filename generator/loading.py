"""Loading causal language models: device and dtype choice, a per-process cache, provenance.

Any `AutoModelForCausalLM` loads, from a Hub id or a local directory. A model is loaded once per
process for each (name, revision, device, dtype) and shared; a lock keeps threads that ask at
the same moment from loading it twice.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import model_info, try_to_load_from_cache
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging
from transformers.utils.hub import extract_commit_hash

from articlegen.core.errors import ModelError
from articlegen.generator.model_files import (
    WEIGHT_ERRORS,
    check_model_directory,
    check_weights_match,
    is_damaged_archive,
    quiet_load_report,
    weights_message,
)

__all__ = [
    "RANDOM_WEIGHTS_FILE",
    "LoadedModel",
    "ModelSpec",
    "directory_digest",
    "hub_model_available",
    "load_model",
    "load_trainable",
    "resolve_device",
    "resolve_dtype",
]

Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["auto", "float32", "bfloat16", "float16"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# `articlegen models init` writes this file beside the weights it draws at random. A file of its
# own, not a key in config.json: training saves the config it loaded into the trained model's
# directory, and a trained model is not random; this file is never copied.
RANDOM_WEIGHTS_FILE = "random_weights.json"


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, and where. Hashable: it keys the process-wide cache.

    `name` is what the loader opens (a Hub id or a directory); `label` is the name articles
    record, when that differs: a registry name that resolved to `name`.
    """

    name: str
    revision: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    label: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to generate, with what is needed to reproduce its output."""

    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: PreTrainedTokenizerBase
    name: str  # what articles record: the registry name, else the source
    revision: str  # Hub commit, or "sha256:<digest>" of a local directory
    device: torch.device
    dtype: torch.dtype
    source: str = ""  # what was opened: a Hub id, or a directory's path
    local: bool = False  # a directory, not a Hub id
    # Never trained: a directory `articlegen models init` wrote (RANDOM_WEIGHTS_FILE). Its
    # text is noise, and its articles say so.
    random_weights: bool = False

    @property
    def vocab_size(self) -> int:
        """The token ids the model has embeddings and logits for: its text decoder's, for a
        multimodal model whose config keeps it there (Gemma-3)."""
        return int(self.model.config.get_text_config(decoder=True).vocab_size)

    @property
    def context_length(self) -> int:
        """The most positions the model attends over (prompt plus generated tokens)."""
        config = self.model.config
        for attribute in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(config, attribute, None)
            if isinstance(value, int):
                return value
        return int(self.tokenizer.model_max_length)


def resolve_device(device: Device) -> torch.device:
    """`auto` takes CUDA, then MPS, then the CPU; an explicit choice must be available."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("ARTICLEGEN_DEVICE is cuda but no CUDA GPU is visible: use auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("ARTICLEGEN_DEVICE is mps but MPS is not available: use auto or cpu")
    return torch.device(device)


def resolve_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on GPUs that do it natively, else float16 there; float32 on the CPU.

    bfloat16 on a CPU (fast with AMX) changes the numbers, so it is never chosen implicitly.
    """
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def directory_digest(path: Path) -> str:
    """The "revision" of a local model: a hash of every file's name and content."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _offline_message(name: str, reason: str) -> str:
    # `hf` is huggingface_hub's command since 0.34; `huggingface-cli` is gone from 1.0.
    return (
        f"cannot load model {name!r}: {reason}. Three ways out: (1) choose a local model with "
        "`articlegen config set model DIR` (a directory, or a name from `articlegen models "
        "list`); (2) download the model on a connected machine (`hf download "
        f"{name}`) and copy its Hugging Face cache (HF_HOME) here; (3) run `articlegen demo`, "
        "which trains a small English model here when the Hub can't be reached"
    )


def _hub_unavailable(name: str, revision: str | None) -> str | None:
    """Why `name` can't come from the Hub now, or None when it can (cached, or the Hub answers).

    Asked before loading because transformers retries an unreachable Hub for about a minute.
    """
    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return None
    if hf_constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and the model is not in the local cache"
    try:
        model_info(name, revision=revision, timeout=5.0)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return "the Hugging Face Hub has no such model (or it is private): check the id"
    except Exception:  # no network, a proxy, a timeout: all mean "not reachable now"
        return "the Hugging Face Hub can't be reached and the model is not in the local cache"
    return None


def _load_uncached(spec: ModelSpec, *, train: bool = False) -> LoadedModel:
    device = resolve_device(spec.device)
    # Training keeps float32 weights (mixed precision is the trainer's, per step).
    dtype = torch.float32 if train else resolve_dtype(spec.dtype, device)
    local = _looks_local(spec.name)
    # A directory by its absolute path: the registry records where the weights were.
    source: str = str(Path(spec.name).expanduser().resolve()) if local else spec.name
    if local:
        check_model_directory(spec.name, Path(source))
    elif (reason := _hub_unavailable(spec.name, spec.revision)) is not None:
        raise ModelError(_offline_message(spec.name, reason))
    tokenizer, model, info = _read_parts(spec, source, dtype, local=local)
    check_weights_match(spec.name, info, local=local)
    if train:
        model.train()
    else:
        model.to(device).eval()
    if local:
        revision = directory_digest(Path(source))
    else:
        cached = try_to_load_from_cache(spec.name, "config.json", revision=spec.revision)
        revision = extract_commit_hash(cached if isinstance(cached, str) else None, None) or (
            spec.revision or "unknown"
        )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=spec.label or spec.name,
        revision=revision,
        device=device,
        dtype=dtype,
        source=source,
        local=local,
        random_weights=local and (Path(source) / RANDOM_WEIGHTS_FILE).is_file(),
    )


def _read_parts(
    spec: ModelSpec, source: str, dtype: torch.dtype, *, local: bool
) -> tuple[PreTrainedTokenizerBase, Any, dict[str, Any]]:
    """The tokenizer, the model and transformers' loading info; what fails is named: the
    tokenizer, config.json or the weights."""
    part = "the tokenizer"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        part = "config.json"
        config = AutoConfig.from_pretrained(source, revision=spec.revision)
        if getattr(config, "activation_function", None) == "gelu_new":
            # GPT-2's tanh GELU written as five Python-level tensor ops; PyTorch's own
            # kernel computes the same function in one pass (about a fifth of a CPU forward).
            config.activation_function = "gelu_pytorch_tanh"
        part = "the weights"
        # Mismatched sizes are loaded (and reported) rather than raised, so that every way the
        # weights and config.json disagree becomes one error, from `check_weights_match`.
        with quiet_load_report():
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                source,
                revision=spec.revision,
                config=config,
                dtype=dtype,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
        model, info = loaded  # with output_loading_info, a (model, info) pair
    except OSError as exc:
        if local:
            if part == "the weights":
                raise ModelError(weights_message(spec.name, exc, Path(source))) from exc
            raise ModelError(f"cannot load {part} of model directory {spec.name}: {exc}") from exc
        raise ModelError(
            _offline_message(
                spec.name,
                "the Hugging Face Hub can't be reached and the model "
                "is not in the local cache, or the id is wrong",
            )
        ) from exc
    except WEIGHT_ERRORS as exc:  # weights that passed the directory's checks, yet unreadable
        raise ModelError(weights_message(spec.name, exc, Path(source) if local else None)) from exc
    except RuntimeError as exc:
        if not is_damaged_archive(exc):
            raise  # out of memory, a CUDA error: not the files' fault
        raise ModelError(weights_message(spec.name, exc, Path(source) if local else None)) from exc
    except ValueError as exc:
        raise ModelError(f"cannot load {part} of model {spec.name!r}: {exc}") from exc
    return tokenizer, model, info


def hub_model_available(name: str) -> bool:
    """Whether `name` can be loaded from the Hub now: cached, or the Hub answers in time."""
    return _hub_unavailable(name, None) is None


def load_trainable(spec: ModelSpec) -> LoadedModel:
    """A fresh copy of the model for training: float32, in train mode, on the CPU (the trainer
    moves it), never shared."""
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return _load_uncached(spec, train=True)


_cache: dict[ModelSpec, LoadedModel] = {}
_lock = threading.Lock()


def load_model(spec: ModelSpec, *, share: bool = True) -> LoadedModel:
    """The model for `spec`, loaded on first use and shared for the life of the process
    (unless `share` is false: a one-off use, such as a check after training)."""
    # Progress bars belong to interactive notebooks, not to batch logs.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not share:
        return _load_uncached(spec)
    with _lock:
        if spec not in _cache:
            _cache[spec] = _load_uncached(spec)
        return _cache[spec]
