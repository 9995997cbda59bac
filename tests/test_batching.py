"""Choosing the batch size from the hardware: probed once, cached, and an explicit size wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from articlegen.core.bounds import MAX_BATCH_SIZE
from articlegen.core.settings import Settings
from articlegen.generator.batching import (
    _PROMPT,
    _STEPS,
    auto_batch_size,
    cache_bytes_per_token,
    cache_tokens,
    memory_limit,
)
from articlegen.generator.kv_cache import InPlaceCache
from articlegen.generator.loading import LoadedModel
from articlegen.runs import GenerateParams, choose_batch_size


def test_the_probe_picks_a_size_and_caches_it(tiny_model: LoadedModel, tmp_path: Path) -> None:
    size = auto_batch_size(tiny_model, tmp_path)
    assert 1 <= size <= memory_limit(tiny_model)
    assert size & (size - 1) == 0  # the probe doubles from 1
    (cached,) = json.loads((tmp_path / "batch-sizes.json").read_text()).items()
    key, value = cached
    assert value == size
    assert tiny_model.revision in key
    assert "cpu" in key


def test_a_cached_size_is_used_without_probing(tiny_model: LoadedModel, tmp_path: Path) -> None:
    auto_batch_size(tiny_model, tmp_path)
    path = tmp_path / "batch-sizes.json"
    (key,) = json.loads(path.read_text())
    # A value the probe could never return (not a power of two) proves it was read back.
    path.write_text(json.dumps({key: 3}))
    assert auto_batch_size(tiny_model, tmp_path) == 3


def test_the_cache_budget_counts_what_the_cache_really_takes(tiny_model: LoadedModel) -> None:
    model = tiny_model.model
    cache = InPlaceCache.allocate(model.config.num_hidden_layers, batch=3, capacity=10)
    with torch.inference_mode():
        ids = torch.randint(0, 100, (3, 4))
        model(input_ids=ids, cache=cache.rows(slice(0, 3), offset=6), use_cache=True)
    cache.written(10)
    assert cache.attended(0).shape[:3] == (3, model.config.num_attention_heads, 10)
    per_token = cache_bytes_per_token(tiny_model)
    assert cache.nbytes == 3 * 10 * per_token
    assert cache_tokens(tiny_model, budget_mb=1) == (1 << 20) // per_token
    # The probe's batches fit the budget too.
    assert memory_limit(tiny_model, budget_mb=1) == min(
        MAX_BATCH_SIZE,
        cache_tokens(tiny_model, 1) // (len(tiny_model.tokenizer(_PROMPT)["input_ids"]) + _STEPS),
    )
    assert 1 <= memory_limit(tiny_model) <= MAX_BATCH_SIZE


def test_a_run_takes_the_explicit_size_or_the_cached_one(
    tiny_model: LoadedModel, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        model=str(tiny_model_dir),
        device="cpu",
        cache_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'a.db'}",  # not the working directory's
    )
    assert choose_batch_size(settings, GenerateParams(batch_size=5)).batch_size == 5
    chosen = choose_batch_size(settings, GenerateParams())
    assert chosen.batch_size == auto_batch_size(tiny_model, tmp_path)
    assert chosen.model_copy(update={"batch_size": None}) == GenerateParams()
