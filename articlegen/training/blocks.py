"""Documents to training blocks: tokenised, joined with the end-of-text token between them (as
GPT-2 saw its training data), and cut into blocks of a fixed number of tokens.

A chat document (an approved article written in chat form) is a conversation the model's chat
template wrote: it holds its special tokens already, so the tokenizer adds none (Llama's would
add a second BOS), and it ends as the template ends the assistant's turn (`<|eot_id|>`), the
token that ends an article in chat form. One another model's template wrote (its prompt does
not end as this template opens a reply) is plain text to this model, and trains as such."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from articlegen.generator.chat import reply_opening, special_tokens, turn_end

__all__ = ["Blocks", "chat_documents", "collate", "to_blocks", "token_stream"]

# Documents tokenised per call: the fast tokenizer works a batch in parallel, in Rust.
_TOKENIZE_BATCH = 1_000
# Ignored by the loss: the labels of padding.
_IGNORE = -100


class Blocks(Dataset[list[int]]):
    """Blocks of token ids; all `block_size` long but the last, which may be shorter."""

    def __init__(self, blocks: list[list[int]]) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> list[int]:
        return self.blocks[index]

    @property
    def tokens(self) -> int:
        """Tokens in all blocks."""
        return sum(len(b) for b in self.blocks)


def chat_documents(tokenizer: Any, chat: Mapping[str, int]) -> set[str]:
    """The documents of `chat` (text: where its reply starts) this tokenizer's template wrote."""
    opening = reply_opening(tokenizer) if chat else ""
    if not opening or not turn_end(tokenizer):
        return set()
    return {text for text, reply in chat.items() if text[:reply].endswith(opening)}


def token_stream(
    tokenizer: Any, documents: Sequence[str], chat: Mapping[str, int] | None = None
) -> list[int]:
    """Every document's tokens, each followed by the end-of-text token; the chat documents
    this tokenizer's template wrote (`chat_documents`) as it wrote them, each followed by the
    end of the assistant's turn."""
    eos = tokenizer.eos_token_id
    chat = chat or {}
    ours = chat_documents(tokenizer, chat)
    ending = tokenizer(turn_end(tokenizer), add_special_tokens=False)["input_ids"] if ours else []
    # A reply that spells the template's markup (an editor typed `<|eot_id|>`) is tokenized
    # apart from its header, its markup read as text: as markup it would end the reply and
    # open a turn. Other documents are tokenized whole, as before: a reply tokenized on its
    # own may begin otherwise (a SentencePiece tokenizer marks the start of a text).
    markup = special_tokens(tokenizer) if ours else []
    split = {t for t in ours if any(m in t[chat[t] :] for m in markup)}
    stream: list[int] = []
    for start in range(0, len(documents), _TOKENIZE_BATCH):
        batch = list(documents[start : start + _TOKENIZE_BATCH])
        parted = [t for t in batch if t in split]
        # verbose=False: a document longer than the context is expected; it is cut into
        # blocks. A chat document's template wrote its special tokens.
        plain = iter(_ids(tokenizer, [t for t in batch if t not in ours], add_special_tokens=True))
        whole = iter(_ids(tokenizer, [t for t in batch if t in ours and t not in split]))
        headers = iter(_ids(tokenizer, [t[: chat[t]] for t in parted]))
        replies = iter(_ids(tokenizer, [t[chat[t] :] for t in parted], split_special_tokens=True))
        for text in batch:
            if text in split:
                stream += next(headers) + next(replies) + ending
            elif text in ours:
                stream += next(whole) + ending
            else:
                stream += next(plain) + ([eos] if eos is not None else [])
    return stream


def _ids(tokenizer: Any, texts: list[str], **options: bool) -> list[list[int]]:
    options.setdefault("add_special_tokens", False)
    return tokenizer(texts, verbose=False, **options)["input_ids"] if texts else []


def to_blocks(
    tokenizer: Any, documents: Sequence[str], block_size: int, chat: Mapping[str, int] | None = None
) -> Blocks:
    """The documents as blocks of `block_size` tokens (those in `chat` are chat documents); a
    last, shorter block is kept when it holds two tokens or more (one to predict from, one to
    predict)."""
    stream = token_stream(tokenizer, documents, chat)
    blocks = [stream[i : i + block_size] for i in range(0, len(stream), block_size)]
    return Blocks([b for b in blocks if len(b) >= 2])


def collate(blocks: list[list[int]]) -> dict[str, torch.Tensor]:
    """A batch: blocks padded on the right to the longest, padding masked and not learned."""
    width = max(len(b) for b in blocks)
    input_ids = torch.zeros((len(blocks), width), dtype=torch.long)
    labels = torch.full((len(blocks), width), _IGNORE, dtype=torch.long)
    attention = torch.zeros((len(blocks), width), dtype=torch.long)
    for row, block in enumerate(blocks):
        ids = torch.tensor(block, dtype=torch.long)
        input_ids[row, : len(block)] = ids
        labels[row, : len(block)] = ids
        attention[row, : len(block)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
