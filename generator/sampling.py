"""Choosing the next token for a whole batch at once, each row with its own settings.

Every function takes logits of shape [batch, vocab] and per-row settings as tensors, so one
batch may mix temperatures, nucleus masses and greedy rows, and the decoding loop does no
per-article Python work. The filters follow transformers' warpers (same rules, same order:
temperature, top-k, top-p, min-p, typical) so presets mean what they mean there.

Sampling uses inverse-CDF draws from uniforms fixed in advance per article, which is what makes
an article's text independent of the batch it runs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from articlegen.generator.decoding import DecodingConfig

__all__ = ["RowSettings", "choose_tokens", "process_logits", "warp"]

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class RowSettings:
    """The per-row decoding settings of one batch, as tensors on the model's device."""

    do_sample: torch.Tensor  # [B] bool
    temperature: torch.Tensor  # [B, 1]
    top_k: torch.Tensor  # [B] long, 0 = off
    top_p: torch.Tensor  # [B, 1]
    min_p: torch.Tensor  # [B, 1]
    typical_p: torch.Tensor  # [B, 1]
    repetition_penalty: torch.Tensor  # [B, 1]
    min_new_tokens: torch.Tensor  # [B] long
    max_new_tokens: torch.Tensor  # [B] long

    @classmethod
    def stack(cls, configs: Sequence[DecodingConfig], device: torch.device) -> RowSettings:
        """Gather each config's settings into batch tensors."""

        def column(name: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([getattr(c, name) for c in configs], dtype=dtype, device=device)

        return cls(
            do_sample=column("do_sample", torch.bool),
            temperature=column("temperature", torch.float32)[:, None],
            top_k=column("top_k", torch.long),
            top_p=column("top_p", torch.float32)[:, None],
            min_p=column("min_p", torch.float32)[:, None],
            typical_p=column("typical_p", torch.float32)[:, None],
            repetition_penalty=column("repetition_penalty", torch.float32)[:, None],
            min_new_tokens=column("min_new_tokens", torch.long),
            max_new_tokens=column("max_new_tokens", torch.long),
        )


def process_logits(
    logits: torch.Tensor,
    settings: RowSettings,
    seen: torch.Tensor,
    steps: torch.Tensor,
    stops: torch.Tensor,
) -> torch.Tensor:
    """The controls that apply to greedy and sampled rows alike: repetition penalty, minimum length.

    `seen` [B, V] marks tokens already in each row (prompt and output), `stops` [B, V] the
    tokens that would end each row, and `steps` [B] how many tokens each row has made.
    """
    scores = logits
    penalty = settings.repetition_penalty
    if bool((penalty != 1.0).any()):
        # CTRL's penalty (as transformers applies it): push seen tokens towards "less likely",
        # dividing positive logits and multiplying negative ones.
        penalised = torch.where(scores > 0, scores / penalty, scores * penalty)
        scores = torch.where(seen, penalised, scores)
    too_short = steps < settings.min_new_tokens
    if bool(too_short.any()):
        scores = scores.masked_fill(too_short[:, None] & stops, _NEG_INF)
    return scores


def _top_k(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    active = k > 0
    if not bool(active.any()):
        return scores
    kk = k.clamp(min=1, max=scores.shape[-1])
    # The k-th largest logit per row; ties with it are kept, as transformers does.
    kth = torch.sort(scores, dim=-1, descending=True).values.gather(1, (kk - 1)[:, None])
    remove = (scores < kth) & active[:, None]
    return scores.masked_fill(remove, _NEG_INF)


def _top_p(scores: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    if not bool((p < 1.0).any()):
        return scores
    # Ascending sort: drop the tail whose total mass is at most 1 - p; what stays is the
    # smallest set of most likely tokens holding at least p. The top token always stays.
    sorted_scores, order = torch.sort(scores, dim=-1)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[:, -1] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, _NEG_INF)


def _min_p(scores: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    if not bool((min_p > 0).any()):
        return scores
    probs = scores.softmax(dim=-1)
    # Relative floor: a token survives if it is at least min_p times as likely as the best.
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    return scores.masked_fill(remove, _NEG_INF)


def _typical(scores: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    if not bool((mass < 1.0).any()):
        return scores
    # Locally typical sampling (Meister et al.): keep the tokens whose surprisal is closest to
    # the distribution's entropy, until their mass reaches `mass`.
    log_probs = scores.log_softmax(dim=-1)
    entropy = -(log_probs.exp() * log_probs).nansum(dim=-1, keepdim=True)
    distance = (-log_probs - entropy).abs()
    sorted_distance, order = torch.sort(distance, dim=-1)
    cumulative = scores.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=1).clamp(max=scores.shape[-1] - 1)
    remove_sorted = sorted_distance > sorted_distance.gather(1, last[:, None])
    remove_sorted[:, 0] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, _NEG_INF)


def warp(scores: torch.Tensor, settings: RowSettings) -> torch.Tensor:
    """The sampling distribution's logits: temperature, then top-k, top-p, min-p and typical."""
    scores = scores / settings.temperature
    scores = _top_k(scores, settings.top_k)
    scores = _top_p(scores, settings.top_p)
    scores = _min_p(scores, settings.min_p)
    return _typical(scores, settings.typical_p)


def choose_tokens(
    scores: torch.Tensor, settings: RowSettings, uniforms: torch.Tensor
) -> torch.Tensor:
    """The next token per row: the argmax for greedy rows, an inverse-CDF draw for sampled ones.

    `uniforms` [B] lie in (0, 1]; a row's draw depends only on its own logits and uniform.
    """
    greedy = scores.argmax(dim=-1)
    if not bool(settings.do_sample.any()):
        return greedy
    probs = warp(scores, settings).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    # The first token whose cumulative probability reaches u: token i is drawn with probability
    # probs[i]. u > 0, so tokens of zero probability (filtered out) are never drawn.
    target = (uniforms[:, None] * cdf[:, -1:]).contiguous()
    sampled = (
        torch.searchsorted(cdf.contiguous(), target).squeeze(1).clamp(max=scores.shape[-1] - 1)
    )
    return torch.where(settings.do_sample, sampled, greedy)
