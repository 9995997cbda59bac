"""The engine alone, in this process, one run: `python -m bench.engine_only --batch-size 32`.

For quick before/after checks of an engine change; `python -m bench` is the benchmark.
"""

from __future__ import annotations

import time

import click

from bench.__main__ import _model
from bench.workload import make_workload
from generator.engine import Engine, GenerationRequest
from generator.loading import ModelSpec, load_model


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--batch-size", default=32, show_default=True)
@click.option("--prompts", default=32, show_default=True)
@click.option("--new-tokens", default=64, show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(batch_size: int, prompts: int, new_tokens: int, dtype: str, device: str) -> None:
    """Tokens per second of the engine on the benchmark's workload.

    Example: python -m bench.engine_only --batch-size 64 --prompts 64 --new-tokens 128
    """
    workload = make_workload(prompts, new_tokens)
    loaded = load_model(ModelSpec(_model("small"), device=device, dtype=dtype))  # type: ignore[arg-type]
    engine = Engine(loaded, batch_size=batch_size)
    config = workload.config()
    warm = config.model_copy(update={"min_new_tokens": 2, "max_new_tokens": 2})
    engine.generate([GenerationRequest(i, p, warm, i) for i, p in enumerate(workload.prompts)])
    requests = [GenerationRequest(i, p, config, i) for i, p in enumerate(workload.prompts)]
    started = time.perf_counter()
    engine.generate(requests)
    seconds = time.perf_counter() - started
    click.echo(f"batch {batch_size}: {workload.tokens / seconds:.1f} tokens/s ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
