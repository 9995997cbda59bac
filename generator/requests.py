"""What the engine takes and gives back: requests, finished generations, failures.

A request carries everything that decides its article: the prompt, the decoding configuration
and the seed. The engine hands each one back with the caller's `key`, in request order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal

import torch

from articlegen.generator.decoding import DecodingConfig

__all__ = [
    "CANCELLED",
    "DecodeStep",
    "Decoded",
    "FinishReason",
    "Generation",
    "GenerationFailure",
    "GenerationRequest",
    "Outcome",
    "Prepared",
    "StepCallback",
    "Stop",
]

FinishReason = Literal["eos", "length", "stop_string"]


@dataclass(frozen=True)
class GenerationRequest:
    """One article to generate. `key` is the caller's, handed back with the outcome."""

    key: Hashable
    prompt: str
    config: DecodingConfig
    seed: int
    # False when `prompt` carries the model's special tokens already: a chat template writes
    # the BOS itself, and the tokenizer must not add a second one.
    add_special_tokens: bool = True


@dataclass(frozen=True)
class Generation:
    """A generated continuation and its measurements."""

    key: Hashable
    text: str
    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]  # log p(token) under the model, before any filtering
    prompt_tokens: int
    finish_reason: FinishReason
    seconds: float  # this article's share of its batch's wall time, by tokens generated
    batch_size: int  # how many articles its batch held (smaller after an out-of-memory split)
    step_logits: tuple[torch.Tensor, ...] = field(default=(), repr=False)

    @property
    def tokens_generated(self) -> int:
        """Tokens produced, the end-of-text token included."""
        return len(self.token_ids)


@dataclass(frozen=True)
class GenerationFailure:
    """A request that could not be generated, and why, in words for the user."""

    key: Hashable
    reason: str
    stopped: bool = False  # not a failure: the run was stopped before this request ended


Outcome = Generation | GenerationFailure


@dataclass(frozen=True)
class Prepared:
    """A request with its prompt tokenised, and its place among the requests of a call."""

    index: int
    request: GenerationRequest
    ids: list[int]


@dataclass(frozen=True)
class Decoded:
    """One row as a decoder returns it: the new tokens, their log-probabilities, why the row
    ended, and (only when asked for) the raw logits of every step."""

    ids: list[int]
    logprobs: list[float]
    reason: FinishReason
    step_logits: tuple[torch.Tensor, ...] = ()
    cancelled: bool = False  # the decoder stopped before the row ended: nothing to keep
    rows: int = 0  # the batch's rows when the row started, where the decoder changes them


# A row a stop cut short (or never started).
CANCELLED = Decoded(ids=[], logprobs=[], reason="length", cancelled=True)


@dataclass(frozen=True)
class DecodeStep:
    """What one decoding step of a batch did, for progress displays.

    `running_fraction` sums, over the call's rows still unfinished, the share of their token
    budget (`max_new_tokens`) they have used: with `finished`, how far the call is, in
    articles. Rows of the next call's requests (`Engine.generate`'s `ahead`) make tokens but
    count towards that call.
    """

    tokens: int  # tokens generated in this step (one per unfinished row)
    # The call's articles that finished in this step; a call that goes on with rows started
    # in the last call first reports, with no tokens, those that ended there.
    finished: int
    running_fraction: float


StepCallback = Callable[[DecodeStep], None]
# Asked after every decoding step (and before every batch): True stops the generation there.
# The rows that ended are kept; the others come back as stopped `GenerationFailure`s.
Stop = Callable[[], bool]
