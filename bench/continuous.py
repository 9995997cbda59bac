"""Articles of different lengths: continuous batching against the batch loop, transformers'
continuous batching, and the same work at one fixed length: `python -m bench.continuous`.

A trained model stops at its end-of-text token after a different number of tokens in every
article. In a plain batch a finished row idles until the batch's longest row ends; our engine
refills it with the next waiting prompt (`generator.continuous`). A random-weights model almost
never stops by itself, so each article here gets its own length (16 to 256 tokens, cycling), as
end-of-text would give it. Same prompts, nucleus sampling, one process, CPU float32, the cache
budget a run uses; each system measured after a warm-up, all in the same run so the ratios
compare like with like.

Targets (issue 16): mixed lengths at >= 90% of the fixed-length throughput, and >= 1.5x
transformers' continuous batching; fixed lengths as fast as the batch loop (within noise).

A queue of mixed lengths ends in a tail the fixed one does not have: once its last prompt has
started, rows empty as articles end, while the longest runs on for up to 256 steps. Its cost is
the same at any queue length, so its share shrinks as the queue grows (`--prompts 512`). Each
run prints the rows that made a token in its mean decoding step.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from functools import partial

import click
import torch

from articlegen.generator.loading import LoadedModel, ModelSpec, load_model
from bench.workload import make_workload, model_dir

LENGTHS = (16, 48, 96, 160, 256, 32, 128, 200)
FIXED = 128  # the fixed-length workload's tokens per article: about the mixed mean (117)


def _sync(loaded: LoadedModel) -> None:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)


def _budget(loaded: LoadedModel, mib: int | None) -> int:
    """The key/value cache budget of `mib` MiB, by default a run's, in positions (rows x
    width)."""
    from articlegen.core.settings import load_settings
    from articlegen.generator.batching import cache_tokens

    return cache_tokens(loaded, mib if mib is not None else load_settings().kv_cache_mb)


def _engine(
    loaded: LoadedModel,
    prompts: list[str],
    lengths: list[int],
    batch_size: int,
    continuous: bool,
    budget: int,
    claimed: int = 0,
    carry: bool = True,
) -> tuple[float, float]:
    """Tokens per second, and the rows that made a token in the mean decoding step. With
    `claimed`, the prompts go to the engine as a flow run hands them over, in calls of that
    many, each given the next as `ahead` when `carry` (one queue across calls)."""
    from articlegen.generator import load_presets
    from articlegen.generator.engine import Engine
    from articlegen.generator.requests import DecodeStep, GenerationRequest

    engine = Engine(loaded, batch_size, cache_tokens=budget, continuous=continuous)
    nucleus = load_presets().resolve("nucleus", {})
    requests = [
        GenerationRequest(
            i, p, nucleus.model_copy(update={"min_new_tokens": n, "max_new_tokens": n}), i
        )
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
    ]
    warm = nucleus.model_copy(update={"min_new_tokens": 2, "max_new_tokens": 2})
    engine.generate([GenerationRequest(i, p, warm, i) for i, p in enumerate(prompts[:batch_size])])
    _sync(loaded)
    size = claimed or len(requests)
    calls = [requests[i : i + size] for i in range(0, len(requests), size)]
    steps: list[DecodeStep] = []
    outcomes = []
    started = time.perf_counter()
    for k, call in enumerate(calls):
        ahead = calls[k + 1] if carry and k + 1 < len(calls) else []
        outcomes += engine.generate(call, on_step=steps.append, ahead=ahead)
    _sync(loaded)
    seconds = time.perf_counter() - started
    tokens = sum(getattr(o, "tokens_generated", 0) for o in outcomes)
    # A call that goes on first reports what ended in the last one: no decoding step.
    decoding = [s for s in steps if s.tokens]
    return tokens / seconds, sum(s.tokens for s in decoding) / max(len(decoding), 1)


def _transformers(loaded: LoadedModel, prompts: list[str], lengths: list[int]) -> float:
    from transformers import GenerationConfig

    tokenizer, model = loaded.tokenizer, loaded.model
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


def rounds(
    systems: dict[str, Callable[[], tuple[float, float]]], repeats: int
) -> dict[str, list[tuple[float, float]]]:
    """Each system's measurements, `repeats` rounds of every system, each round starting one
    system later, so a slow spell of the machine (its rates spread by a fifth on the same code)
    falls on every system alike; evenly so when `repeats` is a multiple of the systems."""
    order = list(systems)
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in order}
    for rep in range(repeats):
        shift = rep % len(order)
        for name in order[shift:] + order[:shift]:
            click.echo(f"round {rep + 1} of {repeats}: {name}", err=True)
            measured[name].append(systems[name]())
    return measured


def round_ratios(
    measured: dict[str, list[tuple[float, float]]], over: str, under: str
) -> list[float]:
    """`over`'s tokens/s over `under`'s, round by round. Their median is what the verdicts
    judge: the two runs of one round ran minutes apart, where the medians of each system may
    come from different rounds, and this machine's speed drifts between them."""
    pairs = zip(measured[over], measured[under], strict=True)
    return [a / b for (a, _), (b, _) in pairs]


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _invariant(loaded: LoadedModel, prompts: list[str], lengths: list[int], rows: int) -> str:
    """How many articles come out the same token for token alone and in the queue."""
    from articlegen.generator import load_presets
    from articlegen.generator.engine import Engine
    from articlegen.generator.requests import GenerationRequest

    nucleus = load_presets().resolve("nucleus", {})
    requests = [
        GenerationRequest(i, p, nucleus.model_copy(update={"max_new_tokens": n}), i)
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
    ]
    queue = Engine(loaded, rows).generate(requests)
    alone = [Engine(loaded, 1).generate([r])[0] for r in requests]
    same = sum(
        getattr(a, "token_ids", 0) == getattr(b, "token_ids", 1)
        for a, b in zip(queue, alone, strict=True)
    )
    return f"{same}/{len(requests)}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--prompts", default=128, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="The engine's rows.",
)
@click.option("--size", default="small", show_default=True, help="The benchmark model's size.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--dtype", default="float32", show_default=True, help="float32 or bfloat16.")
@click.option(
    "--no-transformers", is_flag=True, help="Skip transformers' continuous batching (slow)."
)
@click.option("--no-loop", is_flag=True, help="Skip the batch loop's runs.")
@click.option(
    "--claimed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Hand the prompts over in calls of this many, as a run's claimed batches; 0: one call.",
)
@click.option(
    "--kv-cache-mb",
    type=click.IntRange(min=16),
    help="The key/value cache budget in MiB; default: a run's (ARTICLEGEN_KV_CACHE_MB).",
)
@click.option(
    "--repeats",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rounds of every system, interleaved; the verdicts judge the median of each round's "
    "ratio. Each round starts one system later: a multiple of the systems' number balances it.",
)
@click.option(
    "--no-per-call", is_flag=True, help="Skip the queue-per-call run of `--claimed` calls."
)
@click.option(
    "--check",
    default=0,
    show_default=True,
    help="Also compare this many articles alone and queued.",
)
def main(
    prompts: int,
    batch_size: int,
    size: str,
    device: str,
    dtype: str,
    no_transformers: bool,
    no_loop: bool,
    claimed: int,
    kv_cache_mb: int | None,
    repeats: int,
    no_per_call: bool,
    check: int,
) -> None:
    """Tokens per second on articles of mixed and of fixed length, with PASS/FAIL targets.

    Example: python -m bench.continuous --prompts 128
    """
    loaded = load_model(ModelSpec(model_dir(size), device=device, dtype=dtype))  # type: ignore[arg-type]
    texts = list(make_workload(prompts, 1).prompts)
    mixed = [LENGTHS[i % len(LENGTHS)] for i in range(prompts)]
    fixed = [FIXED] * prompts
    budget = _budget(loaded, kv_cache_mb)
    systems: dict[str, Callable[[], tuple[float, float]]] = {}
    for name, lengths in (("fixed", fixed), ("mixed", mixed)):
        if not no_loop:
            systems[f"{name}, batch loop"] = partial(
                _engine, loaded, texts, lengths, batch_size, False, budget, claimed
            )
        systems[f"{name}, continuous"] = partial(
            _engine, loaded, texts, lengths, batch_size, True, budget, claimed
        )
    if claimed and claimed < prompts and not no_per_call:
        # What one queue across the calls buys: each call a queue of its own, as before.
        systems["mixed, queue per call"] = partial(
            _engine, loaded, texts, mixed, batch_size, True, budget, claimed, carry=False
        )
    if not no_transformers:
        systems["mixed, transformers"] = lambda: (_transformers(loaded, texts, mixed), math.nan)
    measured = rounds(systems, repeats)
    rows = {name: statistics.median(n for _, n in got) for name, got in measured.items()}
    calls = f", in calls of {claimed}" if claimed and claimed < prompts else ""
    click.echo(
        f"{prompts} prompts{calls}, {batch_size} rows, GPT-2 {size}, {device} {dtype}, "
        f"key/value cache budget {budget:,} positions"
    )
    for name, got in measured.items():
        tokens = statistics.median(r for r, _ in got)
        shown = (
            "" if math.isnan(rows[name]) else f"  ({rows[name]:.1f} rows per step)"
        )  # NaN: not ours
        each_run = ", ".join(f"{r:.1f}" for r, _ in got)
        runs_of = f"  runs {each_run}" if repeats > 1 else ""
        click.echo(f"  {name:<22} {tokens:7.1f} tokens/s (median){shown}{runs_of}")

    def ratio(over: str, under: str) -> float:
        return statistics.median(round_ratios(measured, over, under))

    ours = "mixed, continuous"
    targets = [("mixed >= 90% of fixed", ratio(ours, "fixed, continuous"), 0.90)]
    if repeats > 1:
        each_round = ", ".join(
            f"{r:.2f}" for r in round_ratios(measured, ours, "fixed, continuous")
        )
        click.echo(f"  mixed / fixed, round by round: {each_round}")
    if not no_loop:
        click.echo(f"  continuous / batch loop, mixed: {ratio(ours, 'mixed, batch loop'):.2f}x")
        loop = ratio("fixed, continuous", "fixed, batch loop")
        targets.append(("fixed unchanged (>= 0.95x loop)", loop, 0.95))
    if "mixed, queue per call" in measured:
        click.echo(
            f"  one queue / queue per call, mixed: {ratio(ours, 'mixed, queue per call'):.2f}x"
        )
    if "mixed, transformers" in measured:
        targets.append(("mixed >= 1.5x transformers", ratio(ours, "mixed, transformers"), 1.5))
    for name, value, target in targets:
        click.echo(f"  {name:<34} {value:5.2f}  {_verdict(value >= target)}")
    if check:
        same = _invariant(loaded, texts[:check], mixed[:check], min(batch_size, check // 2 or 1))
        click.echo(f"  same tokens alone and queued: {same}")


if __name__ == "__main__":
    main()
