"""Quality metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from articlegen.generator.metrics import (
    QualityThresholds,
    article_metrics,
    batch_metrics,
    distinct_n,
    perplexity,
    self_bleu,
    zipf_coefficient,
)


def test_perplexity() -> None:
    # exp(-(ln 1/2 + ln 1/4) / 2) = exp(ln 8 / 2) = sqrt(8)
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(math.sqrt(8))
    assert perplexity([0.0, 0.0]) == 1.0
    assert perplexity([]) is None


def test_distinct_n() -> None:
    tokens = "the cat sat on the mat".split()
    assert distinct_n(tokens, 1) == pytest.approx(5 / 6)  # "the" twice
    assert distinct_n(tokens, 2) == 1.0
    assert distinct_n("a b a b a b".split(), 2) == pytest.approx(2 / 5)  # ab, ba of 5 pairs
    assert distinct_n("a b a b a b".split(), 3) == pytest.approx(2 / 4)
    assert distinct_n(["a"], 2) == 0.0


def test_self_bleu() -> None:
    same = "the quick brown fox jumps over the lazy dog"
    assert self_bleu([same, same, same]) == pytest.approx(1.0)
    disjoint = ["alpha beta gamma delta epsilon", "one two three four five"]
    assert self_bleu(disjoint) == pytest.approx(0.0, abs=0.01)
    assert self_bleu(["only one text"]) is None

    # Bounded by sampling: under the cap the seed cannot matter, over it it does.
    many = [f"text {i} " + " ".join(f"w{(i * j) % 17}" for j in range(8)) for i in range(60)]
    assert self_bleu(many, max_texts=60, seed=0) == self_bleu(many, max_texts=60, seed=1)
    sampled = {self_bleu(many, max_texts=5, seed=s) for s in range(6)}
    assert len(sampled) > 1


def test_zipf_coefficient() -> None:
    # Counts 60/r for ranks 1..5: exactly Zipf's law with s = 1.
    counts = {"a": 60, "b": 30, "c": 20, "d": 15, "e": 12}
    text = " ".join(word for word, n in counts.items() for _ in range(n))
    assert zipf_coefficient([text]) == pytest.approx(1.0, abs=1e-9)
    assert zipf_coefficient(["same same same"]) is None


def test_article_metrics_and_flags() -> None:
    thresholds = QualityThresholds(min_words=5, min_distinct_2=0.5)
    good = article_metrics(
        "A calm and varied sentence here.",
        "A calm and varied sentence here.",
        [math.log(0.5)] * 4,
        "eos",
        thresholds,
    )
    assert good.flags == ()
    assert good.word_count == 6
    assert good.perplexity == pytest.approx(2.0)
    assert (good.distinct_1, good.distinct_2, good.distinct_3) == (1.0, 1.0, 1.0)

    looping = article_metrics("We go. we go. we go. we go.", "We go.", [], "length", thresholds)
    assert looping.repetition is True
    assert looping.loop_phrase == "we go."
    assert set(looping.flags) == {"degenerate", "too_short", "truncated"}
    assert looping.as_dict()["flags"] == ["degenerate", "too_short", "truncated"]

    repetitive = article_metrics("x", "a b a b a b a b", [], "eos", thresholds)
    assert repetitive.flags == ("degenerate",)  # distinct-2 = 2/7 < 0.5


def test_batch_metrics_keys() -> None:
    result = batch_metrics(["the cat sat", "the dog ran", "a bird flew"])
    assert set(result) == {"self_bleu_4", "zipf_coefficient"}
    assert result["self_bleu_4"] is not None
    assert 0 <= result["self_bleu_4"] <= 1
