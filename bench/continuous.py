"""Continuous batching (transformers' `generate_batch` machinery) against our engine, on articles
of different lengths: `python -m bench.continuous`.

Continuous batching pays off where outputs stop at different lengths: a finished row's place
goes to a waiting prompt instead of idling until its batch ends, as our engine's rows do. A
random-weights model almost never stops by itself, so each article here gets its own length
(16 to 256 tokens, cycling), as end-of-text would give it. Same prompts, nucleus sampling, one
process, the engine with the cache budget a run uses; each system measured after a warm-up.
"""

from __future__ import annotations

import time
from typing import Any

import click
import torch

from articlegen.generator.loading import ModelSpec, load_model
from bench.__main__ import _model
from bench.workload import make_workload

LENGTHS = (16, 48, 96, 160, 256, 32, 128, 200)


def _engine(model_dir: str, prompts: list[str], lengths: list[int], batch_size: int) -> float:
    from articlegen.core.settings import load_settings
    from articlegen.generator import load_presets
    from articlegen.generator.batching import cache_tokens
    from articlegen.generator.engine import Engine
    from articlegen.generator.requests import GenerationRequest

    loaded = load_model(ModelSpec(model_dir, device="cpu", dtype="float32"))
    engine = Engine(
        loaded, batch_size, cache_tokens=cache_tokens(loaded, load_settings().kv_cache_mb)
    )
    nucleus = load_presets().resolve("nucleus", {})
    requests = [
        GenerationRequest(
            i, p, nucleus.model_copy(update={"min_new_tokens": n, "max_new_tokens": n}), i
        )
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
    ]
    warm = nucleus.model_copy(update={"min_new_tokens": 2, "max_new_tokens": 2})
    engine.generate([GenerationRequest(i, p, warm, i) for i, p in enumerate(prompts[:batch_size])])
    started = time.perf_counter()
    outcomes = engine.generate(requests)
    seconds = time.perf_counter() - started
    return sum(getattr(o, "tokens_generated", 0) for o in outcomes) / seconds


def _continuous(model_dir: str, prompts: list[str], lengths: list[int]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=True, top_p=0.95, max_new_tokens=max(lengths), eos_token_id=-1
    )
    inputs = [tokenizer(p)["input_ids"] for p in prompts]
    model.generate_batch(inputs[:4], generation_config=config, max_new_tokens=2)  # warm-up
    manager = model.init_continuous_batching(generation_config=config)
    manager.start()
    try:
        started = time.perf_counter()
        for i, (ids, n) in enumerate(zip(inputs, lengths, strict=True)):
            manager.add_request(ids, request_id=str(i), max_new_tokens=n)
        tokens, finished = 0, 0
        while finished < len(inputs):
            result = manager.get_result(timeout=5)
            if result is None:
                if not manager.is_running():
                    raise click.ClickException("the continuous batching manager stopped")
                continue
            if result.is_finished():
                finished += 1
                tokens += len(result.generated_tokens)
        seconds = time.perf_counter() - started
    finally:
        manager.stop(block=True)
    return tokens / seconds


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--prompts", default=64, show_default=True)
@click.option("--batch-size", default=32, show_default=True, help="The engine's batch size.")
def main(prompts: int, batch_size: int) -> None:
    """Tokens per second of the engine and of continuous batching, articles of mixed lengths.

    Example: python -m bench.continuous --prompts 64
    """
    model_dir = _model("small")
    texts = list(make_workload(prompts, 1).prompts)
    lengths = [LENGTHS[i % len(LENGTHS)] for i in range(prompts)]
    engine = _engine(model_dir, texts, lengths, batch_size)
    click.echo(f"engine, batch {batch_size}: {engine:.1f} tokens/s")
    continuous = _continuous(model_dir, texts, lengths)
    click.echo(f"continuous batching: {continuous:.1f} tokens/s ({continuous / engine:.2f}x)")


if __name__ == "__main__":
    main()
