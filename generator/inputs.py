"""Between text and tensors: a loaded model's tokens, padding and input embeddings.

`ModelInputs` is built once per engine and shared by the decoders: it encodes prompts, left-pads
a batch, embeds it (with the batch's noise), and decodes finished rows back to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import torch

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import FinishReason, Prepared

__all__ = ["ModelInputs"]


class ModelInputs:
    """A loaded model's view of its inputs: special ids, embeddings, padding."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model: Any = loaded.model
        self.device = loaded.device
        tokenizer = loaded.tokenizer
        self.eos_id: int | None = tokenizer.eos_token_id
        # GPT-2 has no pad token. Pad positions are masked out, so any id does; use eos.
        self.pad_id: int = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)
        )
        self.embeddings = loaded.model.get_input_embeddings()
        self.embedding_dim = int(self.embeddings.weight.shape[1])
        self.vocab_size = loaded.vocab_size
        self.embedding_rms = _fed_rms(self.embeddings, self.vocab_size, self.device)
        # Every token that ends an article: the tokenizer's end-of-text and the model's own
        # list (Llama-3.1-Instruct ends a turn with <|eot_id|>, Gemma-2-it with <end_of_turn>,
        # neither of them the tokenizer's eos). A request's `stop_token_ids` add to these.
        self.stop_ids: frozenset[int] = frozenset(
            i for i in (self.eos_id, *_generation_eos(loaded.model)) if i is not None
        )
        # Ids past the tokenizer's vocabulary (padded embedding rows) decode to nothing.
        self.vocab_limit = min(len(tokenizer), self.vocab_size)

    def encode(self, prompt: str, add_special_tokens: bool = True) -> list[int]:
        """The prompt's token ids, never empty; without the special tokens the tokenizer
        would add when `add_special_tokens` is false (the prompt has them already)."""
        # The tokenizer adds what its model expects at the start (Llama's <s>; GPT-2 nothing).
        tokenizer = self.loaded.tokenizer
        # verbose=False: a prompt longer than the context fails with our own message (the
        # engine's), not transformers' warning about indexing errors beside it.
        ids: list[int] = tokenizer(prompt, add_special_tokens=add_special_tokens, verbose=False)[
            "input_ids"
        ]
        # An empty prompt starts from the start token, or end-of-text as GPT-2 begins documents.
        start = self.loaded.tokenizer.bos_token_id
        return ids or [start if start is not None else (self.eos_id or self.pad_id)]

    def stops(self, config: DecodingConfig) -> frozenset[int]:
        """The token ids that end an article decoded with `config`."""
        return self.stop_ids | frozenset(config.stop_token_ids)

    def stop_mask(self, configs: Sequence[DecodingConfig]) -> torch.Tensor:
        """[B, vocab] bool: which tokens end each row's article."""
        mask = torch.zeros((len(configs), self.vocab_size), dtype=torch.bool)
        for row, config in enumerate(configs):
            ids = [i for i in self.stops(config) if i < self.vocab_size]
            mask[row, ids] = True
        return mask.to(self.device)

    def decode(self, ids: Sequence[int], reason: FinishReason, config: DecodingConfig) -> str:
        """A row's text, cut before the stop string or without the stop token that ended it."""
        if reason == "eos" and ids:
            # A stop token is the article's end, not its text (a `stop_token_ids` entry need not
            # be a special token that decoding would skip anyway).
            ids = ids[:-1]
        text = str(self.loaded.tokenizer.decode(list(ids), skip_special_tokens=True))
        if reason == "stop_string":
            cuts = [text.find(s) for s in config.stop_strings if s in text]
            text = text[: min(cuts)] if cuts else text
        return text

    def left_pad(self, batch: Sequence[Prepared]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and attention mask [B, longest prompt], each prompt flush right."""
        width = max(len(p.ids) for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prepared in enumerate(batch):
            n = len(prepared.ids)
            ids[row, width - n :] = torch.tensor(prepared.ids)
            mask[row, width - n :] = 1
        return ids.to(self.device), mask.to(self.device)

    def embed(self, ids: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The input embeddings of `ids`, plus the matching positions of `noise`, if any."""
        embeds: torch.Tensor = self.embeddings(ids)
        if noise is not None:
            # Rows with sigma 0 get exact zeros added: their output equals plain decoding.
            embeds = embeds + noise[:, : ids.shape[1]].to(embeds.dtype)
        return embeds


def _generation_eos(model: Any) -> list[int]:
    """The end-of-text ids of the model's `generation_config`: one id, a list, or none."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(i) for i in (eos if isinstance(eos, list | tuple) else [eos])]


# Per embedding module: every engine of a model (one per batch size, and the batch-size probe's)
# would otherwise embed the whole vocabulary again.
_FED_RMS: WeakKeyDictionary[Any, float] = WeakKeyDictionary()


def _fed_rms(embeddings: Any, vocab: int, device: torch.device) -> float:
    if embeddings not in _FED_RMS:
        _FED_RMS[embeddings] = _measure_fed_rms(embeddings, vocab, device)
    return _FED_RMS[embeddings]


@torch.inference_mode()
def _measure_fed_rms(embeddings: Any, vocab: int, device: torch.device) -> float:
    """The RMS of the embeddings as the embedding module hands them on, over the vocabulary.

    Not the weight matrix's: Gemma's module multiplies its weights by sqrt(hidden) (2048 wide:
    45x), so noise scaled to the weights would be that much weaker there than on GPT-2 or
    Llama. Measured through the module, in slices, so any scaling it applies counts and a
    262k-token vocabulary never sits in memory at once.
    """
    total, count = 0.0, 0
    for start in range(0, vocab, 8192):
        ids = torch.arange(start, min(vocab, start + 8192), device=device)
        fed = embeddings(ids).float()
        total += float(fed.pow(2).sum())
        count += fed.numel()
    return float((total / max(count, 1)) ** 0.5)
