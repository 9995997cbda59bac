"""Quality measures from Holtzman et al., "The Curious Case of Neural Text Degeneration" (2020).

Per article: perplexity under the generating model, word count, distinct-n, and the terminal
repetition test. Per batch: Self-BLEU-4 (Zhu et al., 2018; sampled, so its quadratic cost stays
bounded) and the Zipf coefficient of the word frequencies. Flags come from `QualityThresholds`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from pydantic import BaseModel, ConfigDict, Field

from articlegen.generator.postprocess import find_terminal_loop, words

__all__ = [
    "FLAGS",
    "ArticleMetrics",
    "QualityThresholds",
    "article_metrics",
    "batch_metrics",
    "distinct_n",
    "perplexity",
    "self_bleu",
    "zipf_coefficient",
]

# The quality flags an article can carry, and what each means.
FLAGS = {
    "degenerate": "ends in a repetition loop, or repeats most of its word pairs",
    "too_short": "fewer words than QualityThresholds.min_words",
    "truncated": "stopped by max_new_tokens, not by the model",
}


class QualityThresholds(BaseModel):
    """When an article is flagged. Flags inform review; nothing is dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_words: int = Field(
        default=40, ge=0, le=10_000, description="Fewer words than this: `too_short`."
    )
    min_distinct_2: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Distinct-2 below this (half the word pairs repeats): `degenerate`. Human "
        "text scores about 0.9 on article-length samples.",
    )


@dataclass(frozen=True)
class ArticleMetrics:
    """One article's measures and flags."""

    perplexity: float | None
    word_count: int
    distinct_1: float
    distinct_2: float
    distinct_3: float
    repetition: bool
    loop_phrase: str | None
    flags: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for the database and exports."""
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data


def perplexity(logprobs: Sequence[float]) -> float | None:
    """exp of the mean negative log-probability; None for no tokens."""
    if not logprobs:
        return None
    return math.exp(-sum(logprobs) / len(logprobs))


def distinct_n(tokens: Sequence[str], n: int) -> float:
    """Unique n-grams over total n-grams (Li et al., 2016); 0.0 when there are none."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def article_metrics(
    raw_text: str,
    body: str,
    logprobs: Sequence[float],
    finish_reason: str,
    thresholds: QualityThresholds,
) -> ArticleMetrics:
    """Measure one article: repetition on the raw text (before loops are removed), the rest on
    the body a reader sees."""
    tokens = words(body)
    loop = find_terminal_loop(raw_text)
    d2 = distinct_n(tokens, 2)
    flags = []
    if loop is not None or (len(tokens) > 2 and d2 < thresholds.min_distinct_2):
        flags.append("degenerate")
    if len(tokens) < thresholds.min_words:
        flags.append("too_short")
    if finish_reason == "length":
        flags.append("truncated")
    return ArticleMetrics(
        perplexity=perplexity(logprobs),
        word_count=len(tokens),
        distinct_1=distinct_n(tokens, 1),
        distinct_2=d2,
        distinct_3=distinct_n(tokens, 3),
        repetition=loop is not None,
        loop_phrase=loop[1] if loop else None,
        flags=tuple(flags),
    )


def self_bleu(texts: Sequence[str], max_texts: int = 50, seed: int = 0) -> float | None:
    """Mean BLEU-4 of each text against all the others: high means the texts look alike.

    Texts past `max_texts` are sampled (seeded), bounding the quadratic cost. None for < 2.
    """
    tokenized = [words(t) for t in texts]
    tokenized = [t for t in tokenized if t]
    if len(tokenized) < 2:
        return None
    if len(tokenized) > max_texts:
        tokenized = random.Random(seed).sample(tokenized, max_texts)
    smoothing = SmoothingFunction().method1  # as Texygen's Self-BLEU, for short texts
    scores = [
        sentence_bleu(
            tokenized[:i] + tokenized[i + 1 :],
            hypothesis,
            weights=(0.25, 0.25, 0.25, 0.25),
            smoothing_function=smoothing,
        )
        for i, hypothesis in enumerate(tokenized)
    ]
    return float(sum(scores) / len(scores))


def zipf_coefficient(texts: Sequence[str]) -> float | None:
    """s in frequency ~ rank^-s, by least squares on log-log; human English is near 1.

    None when fewer than two distinct words occur.
    """
    counts = sorted(Counter(w for t in texts for w in words(t)).values(), reverse=True)
    if len(counts) < 2:
        return None
    ranks = np.arange(1, len(counts) + 1, dtype=float)
    slope, _ = np.polyfit(np.log(ranks), np.log(np.asarray(counts, dtype=float)), 1)
    return float(-slope)


def batch_metrics(texts: Sequence[str]) -> dict[str, float | None]:
    """The measures of a set of articles taken together."""
    return {"self_bleu_4": self_bleu(texts), "zipf_coefficient": zipf_coefficient(texts)}
