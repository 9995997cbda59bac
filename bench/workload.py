"""The benchmark's workload: prompts of mixed length, a fixed amount of work per article."""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import click

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.presets import load_presets

__all__ = ["MODELS", "Workload", "make_workload", "model_dir"]

CORPUS = Path(str(files("articlegen.examples") / "corpus.txt"))
# Prompt lengths in words, from a short title-like line to a long paragraph: the mix a content
# team's CSV holds, and the reason batching has to deal with padding.
LENGTHS = (4, 8, 12, 20, 30, 45, 60, 80, 100, 130, 160)


@dataclass(frozen=True)
class Workload:
    """What every system generates: these prompts, each continued by exactly `new_tokens`."""

    prompts: tuple[str, ...]
    new_tokens: int
    preset: str = "nucleus"

    @property
    def overrides(self) -> dict[str, int]:
        """min = max new tokens: no article ends early, so every system does the same work."""
        return {"min_new_tokens": self.new_tokens, "max_new_tokens": self.new_tokens}

    def config(self) -> DecodingConfig:
        """The decoding settings every system uses (the preset with `overrides`)."""
        return load_presets().resolve(self.preset, self.overrides)

    @property
    def tokens(self) -> int:
        """Tokens the workload generates in all."""
        return len(self.prompts) * self.new_tokens


def make_workload(
    prompts: int, new_tokens: int, preset: str = "nucleus", seed: int = 0
) -> Workload:
    """`prompts` passages of the example corpus, their lengths cycling through `LENGTHS`."""
    words = CORPUS.read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    texts = []
    for i in range(prompts):
        n = LENGTHS[i % len(LENGTHS)]
        start = rng.randrange(len(words))
        texts.append(" ".join(words[(start + j) % len(words)] for j in range(n)))
    return Workload(tuple(texts), new_tokens, preset)


MODELS = Path(__file__).resolve().parent / ".models"


def model_dir(size: str) -> str:
    """The benchmark's model of `size`, built once by `articlegen models init` and kept."""
    from articlegen.generator.model_init import init_model

    path = MODELS / size
    if not (path / "config.json").exists():
        click.echo(f"building the {size} model in {path} (once)", err=True)
        init_model(path, size=size)  # type: ignore[arg-type]
    return str(path)
