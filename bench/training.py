"""Training throughput: `python -m bench.training [--size small] [--repeats 3]`.

Trains the benchmark's GPT-2 (built locally, random weights) on a made-up corpus two ways, in
alternation, and prints training tokens per second:

- baseline: the loop a user writes by hand in plain PyTorch, with the same recipe (AdamW, a
  linear schedule with warm-up, gradient accumulation, clipping), the same blocks and batches,
  and nothing else: no evaluation, no checkpoints, no registry;
- articlegen: `articlegen train`'s own path (`training.trainer.train_model`): Hugging Face's
  Trainer, an evaluation and a checkpoint each epoch, the registry row kept current. Its tokens
  per second are over the trainer's whole run (evaluations and checkpoints included); the wall
  time of the whole command (reading, tokenising, the memorisation check) is shown beside it.

The ratio articlegen / baseline is what our orchestration costs (or saves) against the
hand-written loop. On a GPU both run in the precision `articlegen train` picks (bf16 where the
GPU has it).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.workload import model_dir as bench_model  # the local models, built once

_SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gu".split()
_WORDS = [a + b for a in _SYLLABLES for b in _SYLLABLES]


def _corpus(path: Path, documents: int) -> Path:
    """Documents of 80-160 made-up words, drawn by Zipf's law as words fall in prose."""
    rng = random.Random(0)
    weights = [1 / rank for rank in range(1, len(_WORDS) + 1)]
    texts = [
        " ".join(rng.choices(_WORDS, weights=weights, k=rng.randint(80, 160))) + "."
        for _ in range(documents)
    ]
    path.write_text("\n<|endoftext|>\n".join(texts), encoding="utf-8")
    return path


def _plain_loop(model_dir: str, corpus: Path, options: dict[str, Any]) -> dict[str, float]:
    """The hand-written baseline; timed from the first batch to the last optimizer step."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from articlegen.generator.loading import ModelSpec, load_trainable, resolve_device
    from articlegen.training.blocks import collate, to_blocks
    from articlegen.training.corpus import build_corpus, read_files
    from articlegen.training.recipe import precision

    torch.manual_seed(options["seed"])
    device = resolve_device(options["device"])
    loaded = load_trainable(ModelSpec(model_dir, device=options["device"], dtype="auto"))
    corpus_split = build_corpus(read_files([corpus]), 0.1)
    blocks = to_blocks(loaded.tokenizer, corpus_split.train, options["block_size"])
    model = loaded.model.to(device)
    mixed = precision(device, "auto")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed)
    batches: DataLoader[list[int]] = DataLoader(
        blocks, batch_size=options["batch_size"], shuffle=True, collate_fn=collate
    )
    accumulation = options["grad_accum"]
    steps = -(-len(batches) // accumulation) * options["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=options["lr"])
    schedule = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, min(steps // 10, 200), steps
    )
    _sync(device)
    started = time.perf_counter()
    for _ in range(options["epochs"]):
        for index, batch in enumerate(batches):
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, autocast_dtype, enabled=autocast_dtype is not None):
                loss = model(**batch).loss / accumulation
            loss.backward()
            if (index + 1) % accumulation == 0 or index + 1 == len(batches):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
    _sync(device)
    seconds = time.perf_counter() - started
    tokens = blocks.tokens * options["epochs"]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _articlegen(
    model_dir: str, corpus: Path, options: dict[str, Any], run: int
) -> dict[str, float]:
    from articlegen.core.settings import Settings
    from articlegen.runs import close_contexts, context_for
    from articlegen.training.params import TrainParams
    from articlegen.training.trainer import train_model

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            database_url=f"sqlite:///{scratch}/bench.db",
            models_dir=Path(scratch) / "models",
            device=options["device"],
        )
        params = TrainParams(
            name=f"bench-{run}",
            base=model_dir,
            corpus=[corpus],
            epochs=options["epochs"],
            learning_rate=options["lr"],
            grad_accum=options["grad_accum"],
            batch_size=options["batch_size"],
            block_size=options["block_size"],
            seed=options["seed"],
            memorisation_samples=2,
        )
        started = time.perf_counter()
        result = train_model(context_for(settings), params)
        wall = time.perf_counter() - started
        close_contexts()
    tokens = result.train_tokens * options["epochs"]
    return {
        "tokens": tokens,
        "seconds": tokens / result.tokens_per_second,
        "tokens_per_s": result.tokens_per_second,
        "wall_seconds": wall,
        "final_eval_loss": result.epochs[-1]["eval_loss"],
    }


@click.command()
@click.option("--size", type=click.Choice(["tiny", "small"]), default="small", show_default=True)
@click.option("--documents", default=300, show_default=True, help="Documents in the corpus.")
@click.option("--block-size", default=256, show_default=True)
@click.option("--batch-size", default=4, show_default=True)
@click.option("--grad-accum", default=4, show_default=True)
@click.option("--epochs", default=1, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Runs of each, alternating.")
@click.option("--device", default="auto", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Also write the figures as JSON.")
def main(
    size: str,
    documents: int,
    block_size: int,
    batch_size: int,
    grad_accum: int,
    epochs: int,
    repeats: int,
    device: str,
    output: Path | None,
) -> None:
    """Measure training tokens/s: articlegen's trainer against a plain PyTorch loop."""
    import torch

    from articlegen.generator.loading import resolve_device

    model_dir = bench_model(size)
    options = {
        "block_size": block_size, "batch_size": batch_size, "grad_accum": grad_accum,
        "epochs": epochs, "lr": 5e-5, "seed": 42, "device": device,
    }  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "articlegen": []}
    with tempfile.TemporaryDirectory() as scratch:
        corpus = _corpus(Path(scratch) / "corpus.txt", documents)
        for run in range(repeats):
            runs["baseline"].append(_plain_loop(model_dir, corpus, options))
            runs["articlegen"].append(_articlegen(model_dir, corpus, options, run))
            click.echo(
                f"run {run + 1}/{repeats}: baseline "
                f"{runs['baseline'][-1]['tokens_per_s']:,.0f} tokens/s, articlegen "
                f"{runs['articlegen'][-1]['tokens_per_s']:,.0f} tokens/s",
                err=True,
            )
    medians = {
        system: {k: statistics.median(r[k] for r in found) for k in found[0]}
        for system, found in runs.items()
    }
    base = medians["baseline"]["tokens_per_s"]
    where = resolve_device(device)  # type: ignore[arg-type]
    hardware = torch.cuda.get_device_name(where) if where.type == "cuda" else "CPU"
    click.echo(
        f"\nTraining throughput, GPT-2 {size}, {hardware} ({torch.get_num_threads()} threads), "
        f"blocks of {block_size}, batch {batch_size} x {grad_accum} accumulated, {epochs} "
        f"epoch(s), median of {repeats}:\n"
    )
    click.echo("| system | tokens/s | vs baseline | train s | wall s |")
    click.echo("| --- | ---: | ---: | ---: | ---: |")
    for system, figures in medians.items():
        wall = f"{figures['wall_seconds']:.1f}" if "wall_seconds" in figures else ""
        click.echo(
            f"| {system} | {figures['tokens_per_s']:,.0f} | {figures['tokens_per_s'] / base:.2f} "
            f"| {figures['seconds']:.1f} | {wall} |"
        )
    if output is not None:
        output.write_text(json.dumps({"options": options, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
