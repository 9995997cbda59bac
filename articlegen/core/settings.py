"""Settings: the project's `articlegen.toml`, overridden by ``ARTICLEGEN_*`` environment variables.

They are read once, at the edge (the CLI, a flow's entry), and passed down as values; library code
never reads the environment itself. Every setting is documented in the README (a test checks).
The file keeps what a project chose (`articlegen config set model ...`, or the demo's own model)
so every later command, `serve` and its deployment runs use it; a variable still wins for one
command or one machine.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from articlegen.core.bounds import MAX_PROMPT, MAX_SETTINGS_FILE_BYTES, PromptFormat
from articlegen.core.describe import closest
from articlegen.core.errors import ConfigError
from articlegen.core.safe_text import control_problem

__all__ = [
    "CONFIG_VARIABLE",
    "Settings",
    "config_path",
    "env_variable",
    "load_settings",
    "unknown_variables",
]

# Where the project's settings file is: `articlegen.toml` in the working directory, unless this
# variable names another (tests point it away from a developer's own file).
CONFIG_VARIABLE = "ARTICLEGEN_CONFIG"


def config_path() -> Path:
    """The settings file this process reads: $ARTICLEGEN_CONFIG, else ./articlegen.toml."""
    return Path(os.environ.get(CONFIG_VARIABLE) or "articlegen.toml")


def env_variable(key: str) -> str:
    """The environment variable that sets the setting `key`."""
    return f"ARTICLEGEN_{key.upper()}"


class Settings(BaseSettings):
    """articlegen's settings: defaults, under the settings file, under the environment."""

    # An empty variable means unset: `ARTICLEGEN_TEMPLATES_DIR=` must not mean "here".
    model_config = SettingsConfigDict(
        env_prefix="ARTICLEGEN_", extra="forbid", frozen=True, env_ignore_empty=True
    )

    # Out of the settings' repr (a log line, a traceback's locals): it may hold a password.
    database_url: str = Field(
        default="sqlite:///articlegen.db",
        min_length=1,
        repr=False,
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
    prompt_format: PromptFormat = Field(
        default="auto",
        description=(
            "How prompts reach the model, for prompts and presets that say nothing: `plain` "
            "(the text as is, for GPT-2 and other base models), `chat` (the text as the user's "
            "message, through the tokenizer's chat template, for instruct models) or `auto` "
            "(chat when the tokenizer has a chat template, else plain), the default, so each "
            "model gets the form it was trained on."
        ),
    )
    system_message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT,
        description=(
            "A system message for prompts and presets that give none (chat form only: a prompt "
            "in plain form with a system message fails, because a base model has no system "
            "role to put it in). Unset: no system message."
        ),
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
    trigger_seconds: int = Field(
        default=30,
        ge=1,
        le=86_400,
        description="How long after an import `articlegen serve` starts a generate-articles "
        "run; imports in that time join the same run. Half a minute gathers a few imports "
        "made one after another into one run, and a new prompt still starts within a minute.",
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
    queue_depth: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "A run's batches hold this many times the batch size in articles: the batch size "
            "is how many articles decode at once, and a row whose article ends takes the "
            "batch's next waiting prompt (continuous batching), and once none waits, the next "
            "batch's. 1: a batch's articles start together, the next batch's as rows free up."
        ),
    )
    lease_seconds: int = Field(
        default=300,
        ge=2,
        le=86_400,
        description=(
            "How long a run's claim on its prompts lasts without renewal; a run renews it every "
            "third of that while it works. When a run's process dies on another machine, its "
            "prompts become claimable and its job `crashed` this long after its last renewal "
            "(on the same machine, the next run sees the process gone at once)."
        ),
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "How many times a prompt may be claimed. A prompt whose runs died, failed or were "
            "stopped that often becomes `failed` instead of pending again (a prompt that kills "
            "its run, say by running out of memory, must not kill every run after it), and "
            "`prompts retry` refuses it until this is raised."
        ),
    )
    web_secret: str | None = Field(
        default=None,
        min_length=32,
        repr=False,
        description="Key that signs the review workspace's session cookies (`articlegen web`). "
        "Unset: a random key made on first use and kept in ARTICLEGEN_CACHE_DIR/web-secret "
        "(readable by its owner only), so sessions survive a restart.",
    )
    web_url: str | None = Field(
        default=None,
        # Host, port and a plain path only: it goes into markdown links in the artifacts.
        pattern=r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~\-/%]*)?$",
        description="The review workspace's address as editors open it, e.g. "
        "`http://127.0.0.1:8000`. Set, each run's Prefect artifacts link every article to its "
        "page there. No credentials in it: it is shown in the artifacts.",
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
    template_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="How long one render of a template may take. A template past it (a loop "
        "that does not end) fails the article it was rendering, with the reason; the others "
        "are written. Bundled templates render in milliseconds.",
    )
    template_max_chars: int = Field(
        default=10_000_000,
        ge=1_000,
        le=1_000_000_000,
        description="How many characters one render, or any value a template builds, may hold. "
        "A template past it fails the article it was rendering, with the reason; an article "
        "is a few thousand characters, so the default only stops runaway templates.",
    )

    @field_validator("system_message")
    @classmethod
    def _plain_system_message(cls, value: str | None) -> str | None:
        # Refused where it is read, as a prompt's `system` cell is at import: found only when a
        # run frames its first prompt, it would fail every prompt, each using up an attempt.
        if value is not None and (problem := control_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _system_needs_chat(self) -> Settings:
        # Refused here, where the settings are read, not prompt by prompt after a run has
        # claimed them all: with these two, every prompt that sets neither would fail.
        if self.prompt_format == "plain" and (self.system_message or "").strip():
            raise ValueError(
                "system_message is set and prompt_format is plain, where a system message has "
                "no place (a base model has no system role): unset one of them"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Earlier sources win: the environment, then the project's file; no `.env` files."""
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_path())


def load_settings() -> Settings:
    """Read the settings, turning a bad value into a `ConfigError` that names where it was set."""
    path = config_path()
    if path.exists() and not path.is_file():
        raise ConfigError(
            f"{path} is not a regular file: remove it, or point ARTICLEGEN_CONFIG "
            "at a settings file"
        )
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{path} is a link to nothing: remove it, or restore its target")
    if path.is_file() and path.stat().st_size > MAX_SETTINGS_FILE_BYTES:
        raise ConfigError(
            f"{path} is {path.stat().st_size:,} bytes, over the {MAX_SETTINGS_FILE_BYTES:,} a "
            "settings file may have: is it the right file? Point ARTICLEGEN_CONFIG at the "
            "settings file"
        )
    try:
        return Settings()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(
            f"{path} is not a TOML file articlegen can read ({exc}): correct it, or remove it "
            "to use the defaults"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # settings that contradict each other, wherever each was set
            raise ConfigError(str(first["msg"]).removeprefix("Value error, ")) from None
        key = str(first["loc"][0])
        message = str(first["msg"]).removeprefix("Value error, ")
        if key and os.environ.get(env_variable(key)):
            raise ConfigError(f"environment variable {env_variable(key)}: {message}") from None
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"{path}: unknown setting `{key}`{closest(key, list(Settings.model_fields))}; "
                f"`articlegen config show` lists them, `articlegen config unset {key}` removes it"
            ) from None
        raise ConfigError(
            f"{path}: `{key}`: {message}; change it with `articlegen config set {key} "
            f"VALUE`, or remove it with `articlegen config unset {key}`"
        ) from None


# ARTICLEGEN_* variables read that are not settings: the settings file's path, and the test
# suite's PostgreSQL server (tests/conftest.py), which must not make every command warn there.
_OTHER_VARIABLES = (CONFIG_VARIABLE, "ARTICLEGEN_TEST_POSTGRES_URL")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ARTICLEGEN_* variable in `environ` that sets nothing, naming the
    closest known one: pydantic-settings ignores them, so a misspelt name would silently
    leave its setting at the default."""
    known = [env_variable(key) for key in Settings.model_fields] + list(_OTHER_VARIABLES)
    warnings = []
    for name in sorted(environ):
        # pydantic-settings reads names without regard to case, so `articlegen_model` sets one.
        upper = name.upper()
        if not upper.startswith("ARTICLEGEN_") or upper in known:
            continue
        # Compared without the prefix they all share, which would make any two names close.
        match = difflib.get_close_matches(upper[11:], [k[11:] for k in known], n=1)
        hint = f" (did you mean {'ARTICLEGEN_' + match[0]}?)" if match else ""
        warnings.append(
            f"environment variable {name} is not an articlegen setting{hint}, and is ignored"
            + ("" if hint else "; the README's settings table lists them")
        )
    return warnings
