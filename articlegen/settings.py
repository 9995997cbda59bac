"""Settings read from the environment, all under the ``ARTICLEGEN_`` prefix.

They are read once, at the edge (the CLI, a flow's entry), and passed down as values; library code
never reads the environment itself. Every setting is documented in the README (a test checks).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from articlegen.errors import ConfigError

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """articlegen's environment settings."""

    model_config = SettingsConfigDict(env_prefix="ARTICLEGEN_", extra="forbid", frozen=True)

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


def load_settings() -> Settings:
    """Read the settings from the environment, turning a bad value into a `ConfigError`."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ARTICLEGEN_" + str(first["loc"][0]).upper() if first["loc"] else "ARTICLEGEN_*"
        raise ConfigError(f"environment variable {name}: {first['msg']}") from exc
