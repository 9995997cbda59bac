"""What the training tests share: a corpus a tiny model can learn, fast options, the
settings a training reads, and the registry as a fresh connection sees it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from articlegen.db import Database
from articlegen.db.models import RegisteredModel
from articlegen.db.registry import find_model

__all__ = ["FAST", "model_directories", "registered", "set_env", "structured_corpus"]

# Fast enough for a test, strong enough to learn: a higher rate, no accumulation, short blocks.
FAST = ["--lr", "1e-3", "--batch-size", "8", "--grad-accum", "1", "--block-size", "64"]
CITIES = "Oslo Lyon Porto Graz Turin Ghent Bern Cork Riga Brno".split()
VEHICLES = "trains buses ferries trams".split()


def structured_corpus(path: Path, documents: int = 120) -> Path:
    """Short reports in one fixed shape: easy to learn, so perplexity must fall."""
    rng = random.Random(1)
    reports = []
    for i in range(documents):
        city, vehicle = rng.choice(CITIES), rng.choice(VEHICLES)
        reports.append(
            f"Report {i}. In {city} the {vehicle} ran {rng.randint(2, 40)} times today. "
            f"The {vehicle} of {city} were on time. Next report follows."
        )
    path.write_text("\n<|endoftext|>\n".join(reports), encoding="utf-8")
    return path


def registered(database_url: str, name: str) -> RegisteredModel | None:
    """The registry row called `name`, read in a fresh connection."""
    db = Database.open(database_url)
    try:
        with db.session(write=False) as session:
            row = find_model(session, name)
            if row is not None:
                session.expunge(row)
            return row
    finally:
        db.close()


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], database_url: str) -> None:
    """`env` and the database, for code that reads the settings in this process."""
    for name, value in {**env, "ARTICLEGEN_DATABASE_URL": database_url}.items():
        monkeypatch.setenv(name, value)


def model_directories(models_dir: Path) -> list[str]:
    """The models' directories under ARTICLEGEN_MODELS_DIR (its `.locks` aside)."""
    if not models_dir.exists():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.name != ".locks")
