"""Is the demo's starter model writing English? `python -m bench.english [--model DIR]`.

Writes an article for every topic of the bundled examples twice, with the same presets and
seeds: once with the starter model `articlegen demo` trains when it has no real model
(`ARTICLEGEN_MODELS_DIR/demo-english/model` by default), once with the same configuration and
tokenizer but random weights (the baseline, built in this run: the model before its training).
For each it prints the share of words found in a word list (Debian's `wamerican`,
/usr/share/dict/words) and the ratio trained / random.

Words are runs of letters (an apostrophe inside allowed); a word counts as found when the word
list has it as written or in lower case.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

import click
import torch

from articlegen.generator.loading import ModelSpec, load_model
from articlegen.generator.presets import load_presets
from articlegen.generator.requests import GenerationRequest

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def _random_copy(model_dir: Path, into: Path) -> Path:
    """The model's configuration and tokenizer with freshly initialised weights."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    shutil.copytree(model_dir, into, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))  # type: ignore[no-untyped-call]
    model.save_pretrained(into)
    return into


def _articles(model_dir: Path, tokens: int) -> list[str]:
    from articlegen.generator.engine import Engine

    with (files("articlegen.examples") / "prompts.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    presets = load_presets()
    loaded = load_model(ModelSpec(str(model_dir), device="cpu", dtype="float32"), share=False)
    requests = [
        GenerationRequest(
            i,
            f"{row['topic']}\n\n{row['prompt']}",
            presets.resolve(row["preset"] or None, {"max_new_tokens": tokens}),
            seed=i,
        )
        for i, row in enumerate(rows)
    ]
    outcomes = Engine(loaded, batch_size=8).generate(requests)
    return [str(getattr(o, "text", "")) for o in outcomes]


def _share(texts: list[str], words: set[str]) -> tuple[float, int]:
    found = [w for t in texts for w in _WORD.findall(t)]
    hits = sum(w in words or w.lower() in words for w in found)
    return hits / max(len(found), 1), len(found)


@click.command()
@click.option(
    "--model",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="The trained model's directory [default: ARTICLEGEN_MODELS_DIR/demo-english/model].",
)
@click.option(
    "--words",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/usr/share/dict/words"),
    show_default=True,
    help="A word list, one word a line (Debian: apt install wamerican).",
)
@click.option(
    "--tokens",
    type=click.IntRange(1, 200),
    default=120,
    show_default=True,
    help="New tokens per article (the demo's 120; the starter's context is 256).",
)
def main(model: Path | None, words: Path, tokens: int) -> None:
    """Share of the starter model's words in a word list, against random weights."""
    if model is None:
        from articlegen.core.settings import load_settings

        model = load_settings().models_dir / "demo-english" / "model"
        if not model.is_dir():
            raise click.UsageError(f"no model at {model}: run `make demo` first, or give --model")
    if not words.is_file():
        raise click.UsageError(f"no word list at {words}: apt install wamerican, or give --words")
    known = set(words.read_text(encoding="utf-8", errors="replace").split())
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _random_copy(model, Path(tmp) / "random")
        shares = {
            "random weights (baseline)": _share(_articles(baseline, tokens), known),
            "trained starter model": _share(_articles(model, tokens), known),
        }
    click.echo(f"{'model':<28}{'words':>8}{'in word list':>14}")
    for name, (share, count) in shares.items():
        click.echo(f"{name:<28}{count:>8}{share:>13.1%}")
    (base, _), (trained, _) = shares.values()
    ratio = f"{trained / base:.2f}x" if base else "n/a (the baseline found no words)"
    click.echo(f"ratio trained / random: {ratio}")


if __name__ == "__main__":
    main()
