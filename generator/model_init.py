"""`articlegen models init`: a randomly initialised GPT-2 with a BPE tokenizer trained locally.

It needs no network, so tests and benchmarks build their models with it. `tiny` is for tests
(fast, a few hundred thousand parameters); `mini` is the shape the demo trains from scratch
when it has no real model; `small` has GPT-2 small's shape (12 layers, 768 wide, 1,024
positions, 50,257-token embedding) so benchmarks do GPT-2's arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

from articlegen.core.bounds import MAX_CORPUS_FILE_BYTES
from articlegen.core.errors import InputError, ModelError
from articlegen.core.files import read_input
from articlegen.generator.loading import RANDOM_WEIGHTS_FILE

__all__ = ["EOS_TOKEN", "SIZES", "InitReport", "default_corpus", "init_model"]

EOS_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class _Shape:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int  # the tokenizer's target; the embedding is padded up to `embedding_rows`
    embedding_rows: int | None


SIZES: dict[str, _Shape] = {
    "tiny": _Shape(
        n_layer=2, n_head=4, n_embd=64, n_positions=512, vocab_size=1_000, embedding_rows=None
    ),
    # The demo's starter model (articlegen.training.starter): 2.6M parameters, small enough to
    # learn English words from scratch in a minute or two on two CPU cores.
    "mini": _Shape(
        n_layer=4, n_head=4, n_embd=192, n_positions=256, vocab_size=4_096, embedding_rows=None
    ),
    # GPT-2 small. A small corpus yields fewer than 50,257 merges; the embedding keeps GPT-2's
    # row count anyway (the extra rows are never sampled), so the compute matches GPT-2's.
    "small": _Shape(
        n_layer=12,
        n_head=12,
        n_embd=768,
        n_positions=1_024,
        vocab_size=50_257,
        embedding_rows=50_257,
    ),
}


@dataclass(frozen=True)
class InitReport:
    """What `init_model` wrote."""

    path: Path
    size: str
    parameters: int
    vocabulary: int


def default_corpus() -> str:
    """The text bundled with articlegen (examples/corpus.txt) for training tokenizers."""
    return (files("articlegen.examples") / "corpus.txt").read_text(encoding="utf-8")


def init_model(
    path: Path,
    size: Literal["tiny", "mini", "small"] = "tiny",
    corpus: Path | None = None,
    seed: int = 0,
    text: str | None = None,
) -> InitReport:
    """Write a random GPT-2 of `size` and a byte-level BPE tokenizer trained on `corpus` (a
    file), or on `text`, else on the bundled corpus; and RANDOM_WEIGHTS_FILE, which tells the
    loader (and so every article of the model) that the weights are random."""
    if path.exists() and any(path.iterdir()):
        raise ModelError(f"{path} exists and is not empty: choose a new directory")
    if text is None and corpus is not None:
        data = read_input(
            corpus,
            f"corpus {corpus}",
            MAX_CORPUS_FILE_BYTES,
            "a tokenizer learns its vocabulary from far less; give part of it",
        )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read corpus {corpus}: {exc}") from exc
    if text is None:
        text = default_corpus()
    shape = SIZES[size]

    # Byte-level BPE, as GPT-2's: every byte is a token, so any text can be encoded.
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        text.splitlines(),
        vocab_size=shape.vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        show_progress=False,
    )
    # GPT-2 has no pad token; we keep it that way so the engine's handling of that is exercised.
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        model_max_length=shape.n_positions,
    )
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    assert isinstance(eos_id, int)
    config = GPT2Config(
        vocab_size=shape.embedding_rows or len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    marker = {
        "random_weights": True,
        "written_by": "articlegen models init",
        "size": size,
        "seed": seed,
        "note": "These weights were drawn at random and never trained: the text is noise.",
    }
    (path / RANDOM_WEIGHTS_FILE).write_text(json.dumps(marker, indent=2) + "\n", "utf-8")
    return InitReport(
        path=path,
        size=size,
        parameters=sum(p.numel() for p in model.parameters()),
        vocabulary=len(tokenizer),
    )
