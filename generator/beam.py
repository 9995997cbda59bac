"""Beam search through transformers' `generate`, and teacher-forced scoring of its output.

A beam batch shares one configuration (`generator.scheduling` groups it so) but not its noise:
each row's prompt embeddings carry the noise drawn from its own seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from articlegen.generator.inputs import ModelInputs
from articlegen.generator.requests import Decoded, FinishReason, Prepared
from articlegen.generator.seeding import draw

__all__ = ["beam_search", "score"]


def beam_search(inputs: ModelInputs, batch: Sequence[Prepared]) -> list[Decoded]:
    """Decode the batch by beam search; each row's log-probabilities come from `score`."""
    config = batch[0].request.config
    ids, mask = inputs.left_pad(batch)
    _, noise = draw(batch, ids.shape[1], inputs.embedding_dim, inputs.embedding_rms, inputs.device)
    embeds = inputs.embed(ids, noise)
    stops = inputs.stops(config)
    generation_config = config.to_generation_config(
        sorted(stops) or None,
        inputs.pad_id,
        suppress_tokens=list(range(inputs.vocab_limit, inputs.vocab_size)) or None,
    )
    extra: dict[str, Any] = {"tokenizer": inputs.loaded.tokenizer} if config.stop_strings else {}
    # The ids ride along with the (noised) embeddings so that n-gram blocking and the
    # repetition penalty see the prompt, as in our own loop; the output then starts with the
    # prompt, which is cut off below.
    sequences = inputs.model.generate(
        input_ids=ids,
        inputs_embeds=embeds,
        attention_mask=mask,
        generation_config=generation_config,
        **extra,
    )
    outputs: list[tuple[list[int], FinishReason]] = []
    for row in range(len(batch)):
        raw = sequences[row, ids.shape[1] :].tolist()
        # Beams that ended early are padded; for GPT-2 the pad is end-of-text itself, so a row
        # that stopped on a stop string looks as if it ended with end-of-text. Everything from
        # the first pad or stop token on is padding, except a stop token the model produced,
        # which only a stop string can rule out.
        end = next((i for i, t in enumerate(raw) if t in stops or t == inputs.pad_id), len(raw))
        tokens = raw[:end]
        text = inputs.loaded.tokenizer.decode(tokens, skip_special_tokens=True)
        if any(s in text for s in config.stop_strings):
            outputs.append((tokens, "stop_string"))
        elif end < len(raw) and raw[end] in stops:
            outputs.append((raw[: end + 1], "eos"))
        else:
            outputs.append((tokens, "length"))
    logprobs = score(inputs, embeds, mask, [tokens for tokens, _ in outputs])
    return [
        Decoded(tokens, row_logprobs, reason)
        for (tokens, reason), row_logprobs in zip(outputs, logprobs, strict=True)
    ]


def score(
    inputs: ModelInputs,
    prompt_embeds: torch.Tensor,
    prompt_mask: torch.Tensor,
    outputs: Sequence[Sequence[int]],
) -> list[list[float]]:
    """log p(token) of each output token under the model, by one teacher-forced pass."""
    width = max((len(o) for o in outputs), default=0)
    if width == 0:
        return [[] for _ in outputs]
    device = inputs.device
    tokens = torch.full((len(outputs), width), inputs.pad_id, dtype=torch.long, device=device)
    out_mask = torch.zeros_like(tokens)
    for row, output in enumerate(outputs):
        tokens[row, : len(output)] = torch.tensor(list(output), device=device)
        out_mask[row, : len(output)] = 1
    embeds = torch.cat([prompt_embeds, inputs.embeddings(tokens)], dim=1)
    mask = torch.cat([prompt_mask, out_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = inputs.model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions
    ).logits.float()
    # The logits at position t predict token t + 1: take the slice that predicts the outputs.
    start = prompt_embeds.shape[1] - 1
    log_probs = logits[:, start : start + width].log_softmax(-1)
    chosen = log_probs.gather(2, tokens[:, :, None]).squeeze(2)
    return [chosen[row, : len(o)].tolist() for row, o in enumerate(outputs)]
