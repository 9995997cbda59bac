"""The engine alone, in this process, one run: `python -m bench.engine_only --batch-size 32`.

For quick before/after checks of an engine change; `python -m bench` is the benchmark.
"""

from __future__ import annotations

import click

from bench.systems import run_engine
from bench.workload import make_workload, model_dir


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--batch-size", default=32, show_default=True)
@click.option("--prompts", default=32, show_default=True)
@click.option("--new-tokens", default=64, show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--no-cache-budget",
    is_flag=True,
    help="Batches of --batch-size rows; else ARTICLEGEN_KV_CACHE_MB (or its default) cuts them.",
)
def main(
    batch_size: int, prompts: int, new_tokens: int, dtype: str, device: str, no_cache_budget: bool
) -> None:
    """Tokens per second of the engine on the benchmark's workload.

    Example: ARTICLEGEN_KV_CACHE_MB=512 python -m bench.engine_only --batch-size 64 --prompts 64
    """
    workload = make_workload(prompts, new_tokens)
    run = run_engine(
        model_dir("small"),
        workload,
        device,
        dtype,  # type: ignore[arg-type]
        batch_size,
        cache_budget=not no_cache_budget,
    )
    click.echo(
        f"batch {batch_size}: {run.tokens_per_s:.1f} tokens/s ({run.seconds:.1f} s, "
        f"peak {run.peak_rss_mb:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
