"""Settings read from the environment, all under the ``ARTICLEGEN_`` prefix.

They are read once, at the edge (the CLI, a flow's entry), and passed down as values; library code
never reads the environment itself. Every setting is documented in the README (a test checks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from articlegen.core.errors import ConfigError

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """articlegen's environment settings."""

    # An empty variable means unset: `ARTICLEGEN_TEMPLATES_DIR=` must not mean "here".
    model_config = SettingsConfigDict(
        env_prefix="ARTICLEGEN_", extra="forbid", frozen=True, env_ignore_empty=True
    )

    database_url: str = Field(
        default="sqlite:///articlegen.db",
        min_length=1,
        description=(
            "SQLAlchemy URL of the application database. The default, a SQLite file in the "
            "working directory, needs no server; `postgresql://user@host/db` scales to many "
            "workers."
        ),
    )
    presets_file: Path | None = Field(
        default=None,
        description=(
            "A TOML file of extra decoding presets. Its presets are added to the bundled ones "
            "and override them by name."
        ),
    )
    model: str = Field(
        default="gpt2",
        min_length=1,
        description=(
            "The causal language model: the name of one trained here (`articlegen models "
            "list`), which resolves first, else a Hugging Face Hub id or a local directory. "
            "GPT-2 small (124M parameters) is the default: it runs on a CPU."
        ),
    )
    model_revision: str | None = Field(
        default=None,
        description="Hub revision (branch, tag or commit) of the model; unset means the latest.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto",
        description="Where the model runs; `auto` takes CUDA, then Apple's MPS, then the CPU.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description=(
            "Weight precision; `auto` is bfloat16 (or float16) on GPUs that support it and "
            "float32 on the CPU, where bfloat16 changes the numbers and is opt-in."
        ),
    )
    schedule: str = Field(
        default="0 * * * *",
        min_length=1,
        description="Cron schedule of the generate-articles deployment that `articlegen serve` "
        "registers: hourly by default, so new prompts wait at most an hour.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "articlegen"
        ),
        description="Where articlegen keeps what it measured about this machine (the batch "
        "size chosen for each model and device), so it is measured once.",
    )
    kv_cache_mb: int | None = Field(
        default=None,
        ge=16,
        description=(
            "MiB the key/value cache of one batch may take; batches of long prompts are cut "
            "shorter to fit. Unset: `generator.batching.CPU_CACHE_MB` on the CPU (larger "
            "batches bought no throughput there, see bench/README.md), half the free memory on "
            "a GPU."
        ),
    )
    lease_seconds: int = Field(
        default=300,
        ge=2,
        le=86_400,
        description=(
            "How long a run's claim on its prompts lasts without renewal; a run renews it every "
            "third of that while it works. When a run's process dies, its prompts become "
            "claimable and its job `crashed` this long after its last renewal."
        ),
    )
    web_secret: str | None = Field(
        default=None,
        min_length=32,
        description="Key that signs the review workspace's session cookies (`articlegen web`). "
        "Unset: a random key made on first use and kept in ARTICLEGEN_CACHE_DIR/web-secret "
        "(readable by its owner only), so sessions survive a restart.",
    )
    web_secure_cookie: bool = Field(
        default=False,
        description="Mark the review workspace's session cookie `Secure`, so a browser sends "
        "it over HTTPS only. Set it when the workspace is served through an HTTPS proxy; off "
        "by default because `articlegen web` itself serves plain HTTP on loopback.",
    )
    models_dir: Path = Field(
        default=Path("models"),
        description="Where `articlegen train` keeps the models it trains, one directory per "
        "name (weights, checkpoints, loss curve); the registry records each one's absolute "
        "path. The offline demo's model is `demo-english`, its corpus in `.corpora/`.",
    )
    templates_dir: Path | None = Field(
        default=None,
        description="A directory of your Jinja templates; they override the bundled ones by name.",
    )


def load_settings() -> Settings:
    """Read the settings from the environment, turning a bad value into a `ConfigError`."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ARTICLEGEN_" + str(first["loc"][0]).upper() if first["loc"] else "ARTICLEGEN_*"
        raise ConfigError(f"environment variable {name}: {first['msg']}") from exc
