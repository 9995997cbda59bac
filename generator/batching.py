"""Choosing a batch size from the hardware: measured once per model and machine, then cached.

Throughput grows with the batch until the hardware is busy (the weights are read once per step
for every row of the batch), then flattens while memory keeps growing. The probe doubles the
batch while that buys at least `GAIN` more tokens per second and the batch's KV cache still
fits the cache budget (`cache_tokens`), and keeps the last size that paid. The answer is cached
on disk by model revision, device, precision, thread count and budget, so later runs start at
once; an explicit batch size always wins over it.

The batch size caps a batch's rows; the cache budget caps its key/value cache, rows x (longest
prompt + new tokens), so batches of long prompts are cut shorter and memory stays bounded
whatever the prompts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from articlegen.core.bounds import MAX_BATCH_SIZE
from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import GenerationRequest

__all__ = [
    "CPU_CACHE_MB",
    "auto_batch_size",
    "cache_bytes_per_token",
    "cache_tokens",
    "cached_batch_size",
    "memory_limit",
]

GAIN = 1.10  # a doubling must buy 10% more throughput to be worth its memory
# The default key/value cache budget of one batch on the CPU. On the 2-core build machine (64
# mixed prompts x 128 tokens, GPT-2 small, fp32), 768 MiB ran at ~147 tokens/s and 1.9 GiB peak,
# no budget (a 2 GiB cache) at ~156 and 3.1 GiB: a CPU gains little from the larger batches.
CPU_CACHE_MB = 768
# Tokens per probe row, after a short prompt: mostly decoding, as in a real article, and a
# few seconds per size on a CPU.
_STEPS = 32
_PROMPT = "The quick brown fox jumps over the lazy dog. " * 2


def _key(loaded: LoadedModel, budget_mb: int | None) -> str:
    device = loaded.device.type
    if device == "cuda":
        device += ":" + torch.cuda.get_device_name(loaded.device)
    return "|".join(
        [
            loaded.name,
            loaded.revision,
            device,
            str(loaded.dtype).removeprefix("torch."),
            f"threads={torch.get_num_threads()}",
            f"cache_mb={budget_mb or 'auto'}",
        ]
    )


def _free_bytes(loaded: LoadedModel) -> int:
    if loaded.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(loaded.device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not every platform reports it
        return 8 << 30


def cache_bytes_per_token(loaded: LoadedModel) -> int:
    """Bytes of key/value cache one position of one row takes, all layers together."""
    config = loaded.model.config.get_text_config(decoder=True)
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    element = torch.finfo(loaded.dtype).bits // 8
    # Keys and values, per layer: 2 x kv_heads x head_dim elements.
    return 2 * layers * kv_heads * head_dim * element


def cache_tokens(loaded: LoadedModel, budget_mb: int | None = None) -> int:
    """How many positions (rows x length) one batch's key/value cache may hold: `budget_mb`
    MiB, or by default `CPU_CACHE_MB` on the CPU and half the free memory on a GPU."""
    if budget_mb is not None:
        budget = budget_mb << 20
    elif loaded.device.type == "cpu":
        budget = min(CPU_CACHE_MB << 20, _free_bytes(loaded) // 2)
    else:
        budget = _free_bytes(loaded) // 2
    return max(1, budget // cache_bytes_per_token(loaded))


def memory_limit(loaded: LoadedModel, budget_mb: int | None = None) -> int:
    """The largest batch the probe tries: its rows' cache must fit `cache_tokens`."""
    rows = cache_tokens(loaded, budget_mb) // (len(loaded.tokenizer(_PROMPT)["input_ids"]) + _STEPS)
    return max(1, min(MAX_BATCH_SIZE, rows))


def _rate(engine: Engine, size: int) -> float:
    config = DecodingConfig(top_p=0.95, min_new_tokens=_STEPS, max_new_tokens=_STEPS)
    requests = [GenerationRequest(i, _PROMPT, config, i) for i in range(size)]
    engine.batch_size = size
    warm = config.model_copy(update={"min_new_tokens": 2, "max_new_tokens": 2})
    engine.generate([GenerationRequest(i, _PROMPT, warm, i) for i in range(size)])
    if engine.loaded.device.type == "cuda":
        torch.cuda.synchronize(engine.loaded.device)
    started = time.perf_counter()
    engine.generate(requests)
    if engine.loaded.device.type == "cuda":
        torch.cuda.synchronize(engine.loaded.device)
    return size * _STEPS / (time.perf_counter() - started)


def probe_batch_size(loaded: LoadedModel, budget_mb: int | None = None) -> int:
    """Measure throughput at batch 1, 2, 4, … and return the largest size that still paid.

    One slow measurement (a busy machine) must not end the search early: it stops only after
    two doublings in a row that bought less than `GAIN`.
    """
    limit = memory_limit(loaded, budget_mb)
    engine = Engine(loaded, batch_size=1)
    best_size, best_rate = 1, _rate(engine, 1)
    misses = 0
    size = 2
    while size <= limit and misses < 2:
        try:
            rate = _rate(engine, size)
        except torch.OutOfMemoryError:
            break
        if rate >= best_rate * GAIN:
            best_size, best_rate, misses = size, rate, 0
        else:
            misses += 1
        size *= 2
    if loaded.device.type == "cuda":
        torch.cuda.empty_cache()
    return best_size


def _known_sizes(path: Path) -> dict[str, int]:
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def cached_batch_size(
    loaded: LoadedModel, cache_dir: Path, budget_mb: int | None = None
) -> int | None:
    """The batch size measured before for `loaded` on this machine, or None: not measured yet."""
    size = _known_sizes(cache_dir / "batch-sizes.json").get(_key(loaded, budget_mb))
    return size if isinstance(size, int) else None


def auto_batch_size(loaded: LoadedModel, cache_dir: Path, budget_mb: int | None = None) -> int:
    """The batch size for `loaded` on this machine and cache budget (`cache_tokens`): from the
    cache, or probed and cached."""
    path = cache_dir / "batch-sizes.json"
    key = _key(loaded, budget_mb)
    known = _known_sizes(path)
    if isinstance(known.get(key), int):
        return known[key]
    size = probe_batch_size(loaded, budget_mb)
    known[key] = size
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        temporary.replace(path)  # atomic: parallel workers never read half a file
    except OSError:
        pass  # a read-only cache only costs the probe next time
    return size
