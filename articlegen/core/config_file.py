"""The project's settings file (`articlegen.toml`): read, set and unset one setting at a time.

`articlegen config set` and the demo write through here. A value is checked as its setting
would check it before anything is written, so the file never holds what `load_settings` would
refuse; the file is edited with tomlkit, so a user's comments and order survive, and replaced
atomically, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from articlegen.core.describe import closest
from articlegen.core.errors import ConfigError
from articlegen.core.settings import Settings, config_path, env_variable

__all__ = ["SettingValue", "set_setting", "settings_table", "unset_setting"]

# Shown as set or not, never in clear: `config show` output lands in logs and issue reports.
SECRET_KEYS = frozenset({"web_secret"})


@dataclass(frozen=True)
class SettingValue:
    """One setting as this process sees it, and where its value comes from."""

    key: str
    value: str
    source: Literal["environment", "file", "default"]
    description: str


def _read(path: Path) -> tomlkit.TOMLDocument:
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(
            f"{path} is not a TOML file articlegen can read ({exc}): correct it, or remove it"
        ) from None


def _write(path: Path, document: tomlkit.TOMLDocument) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(tomlkit.dumps(document))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _known(key: str) -> None:
    if key not in Settings.model_fields:
        raise ConfigError(
            f"unknown setting `{key}`{closest(key, list(Settings.model_fields))}: "
            "`articlegen config show` lists them"
        )


def set_setting(key: str, raw: str, path: Path | None = None) -> Any:
    """Record `key = raw` in the settings file, typed as the setting is; return the value stored.

    Raises `ConfigError` (and writes nothing) for an unknown key, an empty value or one the
    setting refuses.
    """
    path = path or config_path()
    _known(key)
    if not raw.strip():
        raise ConfigError(f"`{key}`: give a value, or `articlegen config unset {key}`")
    document = _read(path)
    current = {k: v for k, v in tomllib.loads(tomlkit.dumps(document)).items() if k != key}
    try:
        # model_validate checks the file's own values as the settings would (types, ranges),
        # without reading the environment: what is written must stand on its own.
        checked = Settings.model_validate({**current, key: raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"`{where}`: {first['msg']}, got {raw!r}") from None
    value = checked.model_dump(mode="json")[key]
    document[key] = value
    _write(path, document)
    return value


def unset_setting(key: str, path: Path | None = None) -> bool:
    """Remove `key` from the settings file; False when the file did not set it."""
    path = path or config_path()
    _known(key)
    document = _read(path)
    if key not in document:
        return False
    del document[key]
    _write(path, document)
    return True


def _without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def settings_table(settings: Settings, path: Path | None = None) -> list[SettingValue]:
    """Every setting's value in `settings` and where it came from, secrets hidden."""
    path = path or config_path()
    in_file = set(_read(path))
    values = settings.model_dump(mode="json")
    rows = []
    for key, field in Settings.model_fields.items():
        if os.environ.get(env_variable(key)):
            source: Literal["environment", "file", "default"] = "environment"
        elif key in in_file:
            source = "file"
        else:
            source = "default"
        value = values[key]
        shown = "" if value is None else str(value)
        if isinstance(value, bool):
            shown = "true" if value else "false"  # as the file and the variable spell it
        if key in SECRET_KEYS and value is not None:
            shown = "(set, hidden)"
        elif key == "database_url":
            shown = _without_password(shown)
        rows.append(SettingValue(key, shown, source, field.description or ""))
    return rows
