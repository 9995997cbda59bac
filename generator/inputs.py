"""Between text and tensors: a loaded model's tokens, padding and input embeddings.

`ModelInputs` is built once per engine and shared by the decoders: it encodes prompts, left-pads
a batch, embeds it (with the batch's noise), and decodes finished rows back to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        self.embedding_rms = float(self.embeddings.weight.detach().float().pow(2).mean().sqrt())
        self.vocab_size = int(loaded.model.config.vocab_size)
        # Ids past the tokenizer's vocabulary (padded embedding rows) decode to nothing.
        self.vocab_limit = min(len(tokenizer), self.vocab_size)

    def encode(self, prompt: str, add_special_tokens: bool = True) -> list[int]:
        """The prompt's token ids, never empty; without the special tokens the tokenizer
        would add when `add_special_tokens` is false (the prompt has them already)."""
        # The tokenizer adds what its model expects at the start (Llama's <s>; GPT-2 nothing).
        tokenizer = self.loaded.tokenizer
        ids: list[int] = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        # An empty prompt starts from the start token, or end-of-text as GPT-2 begins documents.
        start = self.loaded.tokenizer.bos_token_id
        return ids or [start if start is not None else (self.eos_id or self.pad_id)]

    def decode(self, ids: Sequence[int], reason: FinishReason, config: DecodingConfig) -> str:
        """A row's text, cut before the stop string that ended it."""
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
