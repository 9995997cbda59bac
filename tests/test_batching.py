"""Choosing the batch size from the hardware: probed once, cached, and an explicit size wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from articlegen.runner import GenerateParams, choose_batch_size
from articlegen.settings import Settings
from generator.batching import MAX_BATCH, auto_batch_size, memory_limit
from generator.loading import LoadedModel


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


def test_memory_limit_counts_the_kv_cache_at_full_context(tiny_model: LoadedModel) -> None:
    limit = memory_limit(tiny_model)
    assert 1 <= limit <= MAX_BATCH


def test_a_run_takes_the_explicit_size_or_the_cached_one(
    tiny_model: LoadedModel, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path)
    assert choose_batch_size(settings, GenerateParams(batch_size=5)).batch_size == 5
    chosen = choose_batch_size(settings, GenerateParams())
    assert chosen.batch_size == auto_batch_size(tiny_model, tmp_path)
    assert chosen.model_copy(update={"batch_size": None}) == GenerateParams()
