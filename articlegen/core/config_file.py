"""The project's settings file (`articlegen.toml`): read, set and unset one setting at a time.

`articlegen config set` and the demo write through here. A value is checked as its setting
would check it before anything is written, so the file never holds what `load_settings` would
refuse; the file is edited with tomlkit, so a user's comments and order survive, and replaced
atomically, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from articlegen.core.describe import closest
from articlegen.core.errors import ConfigError
from articlegen.core.redact import safe_database_url
from articlegen.core.settings import Settings, config_path, env_variable

__all__ = ["SettingValue", "set_setting", "settings_table", "shown_value", "unset_setting"]

# Shown as set or not, never in clear: `config show` output lands in logs and issue reports.
SECRET_KEYS = frozenset({"web_secret"})
# Values never quoted back in an error message: they may hold a password.
_UNQUOTED = SECRET_KEYS | {"database_url"}
# A new settings file is readable by all, like the project files beside it.
_DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class SettingValue:
    """One setting as this process sees it, and where its value comes from."""

    key: str
    value: str
    source: Literal["environment", "file", "default"]
    description: str


class _FileSettings(Settings):
    """The settings from given values alone: no environment, no file (what is written must
    stand on its own, whatever this shell has set)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given."""
        return (init_settings,)


def _read(path: Path) -> tomlkit.TOMLDocument:
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(
            f"{path} is not a TOML file articlegen can read ({exc}): correct it, or remove it"
        ) from None


@contextmanager
def _editing(path: Path) -> Iterator[tomlkit.TOMLDocument]:
    """The file's document to change, written back if the block changed it and ended without
    an error.

    One editor at a time (a lock beside the file), so two `config set`s don't lose either
    change; through a symlink to the file it names; the file's permissions kept; replaced
    atomically, so a crash leaves the old file or the new one."""
    target = path.resolve() if path.is_symlink() else path
    if target.exists() and not target.is_file():
        raise ConfigError(f"{path} is not a regular file: point ARTICLEGEN_CONFIG at a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / f".{target.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            document = _read(target)
            before = tomlkit.dumps(document)
            yield document
            if tomlkit.dumps(document) != before:
                _replace(target, tomlkit.dumps(document))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _replace(target: Path, text: str) -> None:
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _DEFAULT_MODE
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)  # mkstemp makes it 0600; others may need to read it
        os.replace(temporary, target)
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

    Raises `ConfigError` (and writes nothing) for an unknown key, an empty value, one the
    setting refuses, or a file whose other settings are already invalid.
    """
    path = path or config_path()
    _known(key)
    if not raw.strip():
        raise ConfigError(f"`{key}`: give a value, or `articlegen config unset {key}`")
    with _editing(path) as document:
        current = {k: v for k, v in tomllib.loads(tomlkit.dumps(document)).items() if k != key}
        try:
            checked = _FileSettings(**{**current, key: raw})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = str(first["loc"][0]) if first["loc"] else key
            if where != key:
                raise ConfigError(
                    f"{path} already has a bad `{where}` ({first['msg']}): correct it with "
                    f"`articlegen config set {where} VALUE` or `articlegen config unset {where}`"
                ) from None
            got = "" if key in _UNQUOTED else f", got {raw!r}"
            raise ConfigError(f"`{key}`: {first['msg']}{got}") from None
        value = checked.model_dump(mode="json")[key]
        document[key] = value
    return value


def unset_setting(key: str, path: Path | None = None) -> bool:
    """Remove `key` from the settings file; False when the file did not set it. A key the file
    holds is removed even when it is no setting (a typo every command complains about)."""
    path = path or config_path()
    with _editing(path) as document:
        if key not in document:
            _known(key)
            return False
        del document[key]
    return True


def shown_value(key: str, value: object) -> str:
    """`value` of setting `key` as commands print it: secrets hidden, booleans as TOML spells
    them. Output lands in terminals, logs and issue reports."""
    if value is None:
        return ""
    if key in SECRET_KEYS:
        return "(set, hidden)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "database_url":
        return safe_database_url(str(value))
    return str(value)


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
        shown = shown_value(key, values[key])
        rows.append(SettingValue(key, shown, source, field.description or ""))
    return rows
