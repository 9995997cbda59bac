"""What the engine's queue tests share: prompts, a fake out-of-memory edge, and a database
seeded with articles of given lengths."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from articlegen.core.settings import Settings
from articlegen.db import Database
from articlegen.generator import PresetCatalog
from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.requests import Generation, GenerationRequest
from articlegen.importing import import_prompts_csv
from articlegen.runs import close_contexts

PROMPTS = [
    "The history of the bicycle",
    "x",
    "A short guide to growing tomatoes on a balcony in a small city flat",
    "Why sleep matters",
    "Notes on the slow food movement and what it asks of a busy household cook",
    "Tea",
    "How libraries changed",
    "The quiet economics of repair cafes",
    "Bread",
    "Ten things to know before adopting a cat from a shelter",
]


def mixed_requests(prompts: list[str]) -> list[GenerationRequest]:
    """Articles of different lengths and settings: greedy, sampled, noised."""
    presets: list[dict[str, Any]] = [
        {"do_sample": False},
        {"top_p": 0.9},
        {"do_sample": False, "noise_sigma": 0.5},
        {"top_k": 20, "temperature": 0.8, "noise_sigma": 0.3, "noise_every_step": True},
        {"repetition_penalty": 1.3, "top_p": 0.95},
    ]
    requests = []
    for i, prompt in enumerate(prompts):
        length = 3 + (i * 7) % 23  # 3 to 25 tokens, in no order
        config = DecodingConfig.model_validate(
            {**presets[i % len(presets)], "min_new_tokens": length, "max_new_tokens": length}
        )
        requests.append(GenerationRequest(i, prompt, config, seed=100 + i))
    return requests


def generations(engine: Engine, requests: list[GenerationRequest], **kw: Any) -> list[Generation]:
    """`engine.generate(requests, **kw)`, every outcome an article."""
    outcomes = engine.generate(requests, **kw)
    assert all(isinstance(o, Generation) for o in outcomes)
    return [o for o in outcomes if isinstance(o, Generation)]


class OutOfMemoryAbove(torch.nn.Module):
    """The hardware edge, faked: the real model, out of memory above `limit` rows."""

    def __init__(self, inner: Any, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.config = inner, limit, inner.config
        self.failures = 0

    def get_input_embeddings(self) -> Any:
        return self.inner.get_input_embeddings()

    def forward(self, **kwargs: Any) -> Any:
        if kwargs["inputs_embeds"].shape[0] > self.limit:
            self.failures += 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(**kwargs)


@contextmanager
def seeded_run(
    lengths: list[int],
    sqlite_url: str,
    model_dir: Path,
    catalog: PresetCatalog,
    tmp_path: Path,
    depth: int,
) -> Iterator[tuple[Settings, Database]]:
    """Settings of queue depth `depth` and a database holding one prompt per length, each
    with exactly that many new tokens (a sampled end-of-text would make lengths random); the
    database and the process's run contexts are closed on the way out, whatever happened."""
    settings = Settings(
        database_url=sqlite_url, model=str(model_dir), device="cpu", queue_depth=depth
    )
    source = tmp_path / "prompts.csv"
    rows = [f"Topic {i},{n},{n}" for i, n in enumerate(lengths)]
    header = "topic,min_new_tokens,max_new_tokens\n"
    source.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    db = Database.open(sqlite_url)
    try:
        assert import_prompts_csv(db, source, catalog).inserted == len(lengths)
        yield settings, db
    finally:
        db.close()
        close_contexts()
