"""Decoding presets: named sets of settings, bundled (`presets.toml`) or the user's own.

`PresetCatalog.resolve` merges overrides over a preset over the field defaults and validates the
result: the one place a prompt's settings become a `DecodingConfig`. A preset may also say how
its prompts are framed (`prompt_format`, `system`: a `PromptStyle`, kept apart from decoding,
since it changes the text the model is given and not how tokens are chosen).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from articlegen.core.bounds import MAX_SETTINGS_FILE_BYTES
from articlegen.core.describe import closest, describe_validation_error
from articlegen.core.errors import ConfigError
from articlegen.core.files import check_input_file
from articlegen.generator.chat import (
    SETTING_OF,
    STYLE_FIELDS,
    PromptStyle,
    parse_style,
    settle_style,
)
from articlegen.generator.decoding import (
    DECODING_FIELDS,
    DEFAULT_PRESET,
    DecodingConfig,
    DecodingOverrides,
    Resolved,
    settle,
)

__all__ = ["Preset", "PresetCatalog", "load_presets"]

Layer = Mapping[str, Any] | DecodingOverrides


@dataclass(frozen=True)
class Preset:
    """A named set of decoding settings, with the description shown by `articlegen presets`,
    and how its prompts are framed (unset: the settings' choice)."""

    name: str
    description: str
    values: Mapping[str, Any]
    style: PromptStyle = field(default_factory=PromptStyle)


class PresetCatalog:
    """The presets known to this process: bundled ones, overridden by name by the user's."""

    def __init__(self, presets: Mapping[str, Preset]) -> None:
        self._presets = dict(presets)

    def __iter__(self) -> Iterator[Preset]:
        return iter(self._presets.values())

    def __contains__(self, name: object) -> bool:
        return name in self._presets

    def names(self) -> list[str]:
        """Preset names, in definition order."""
        return list(self._presets)

    def get(self, name: str) -> Preset:
        """The preset called `name`; `ConfigError` with the closest name when there is none."""
        try:
            return self._presets[name]
        except KeyError:
            hint = closest(name, list(self._presets)).strip(" ()")
            shown = name if len(name) <= 60 else f"{name[:60]}… ({len(name):,} characters)"
            raise ConfigError(
                f"unknown preset `{shown}`: {hint + ' ' if hint else ''}known presets are "
                f"{', '.join(self._presets)} (add your own with ARTICLEGEN_PRESETS_FILE)"
            ) from None

    def merge(self, preset: str | None = None, *layers: Layer | None) -> dict[str, Any]:
        """The raw settings: each layer over the one before, over the preset (default
        `nucleus`); not validated as a whole yet."""
        merged = dict(self.get(preset or DEFAULT_PRESET).values)
        for layer in layers:
            if isinstance(layer, DecodingOverrides):
                merged.update(layer.settings())
            elif layer:
                merged.update(layer)
        return merged

    def resolve_with_warnings(self, preset: str | None = None, *layers: Layer | None) -> Resolved:
        """Merge and validate; the moot settings come back as text, for the caller to show.

        Raises `ConfigError` naming each bad field.
        """
        try:
            return settle(self.merge(preset, *layers))
        except ValidationError as exc:
            raise _invalid(preset, exc) from exc

    def style(
        self,
        preset: str | None,
        own: PromptStyle,
        settings: PromptStyle | None = None,
        run: PromptStyle | None = None,
    ) -> PromptStyle:
        """A prompt's `own` format and system message over its preset's, over the `settings`'
        (when known), under the `run`'s (when it sets any): each field from the first that
        sets it, checked (`settle_style`).

        Raises `ConfigError` for the plain form with a system message, saying which layer gave
        each field that is not the prompt's own.
        """
        found = self.get(preset or DEFAULT_PRESET)
        run = run or PromptStyle()
        try:
            return settle_style(run.over(own, found.style, settings))
        except ConfigError as exc:
            origins = []
            for name in STYLE_FIELDS:
                if getattr(run, name) is not None:
                    origins.append(f"`{name}` from the run (--{name.replace('_', '-')})")
                elif getattr(own, name) is not None:
                    continue
                elif getattr(found.style, name) is not None:
                    origins.append(f"`{name}` from preset `{found.name}`")
                elif settings is not None and getattr(settings, name) is not None:
                    origins.append(f"`{name}` from {SETTING_OF[name]}")
            if not origins:
                raise
            raise ConfigError(f"{exc} ({', '.join(origins)})") from None

    def resolve(self, preset: str | None = None, *layers: Layer | None) -> DecodingConfig:
        """Merge and validate; raises `ConfigError` naming each bad field, and warns
        `DecodingWarning` once for each moot setting."""
        try:
            return DecodingConfig.model_validate(self.merge(preset, *layers))
        except ValidationError as exc:
            raise _invalid(preset, exc) from exc


def _invalid(preset: str | None, exc: ValidationError) -> ConfigError:
    return ConfigError(
        f"decoding settings (preset `{preset or DEFAULT_PRESET}`): "
        + "; ".join(describe_validation_error(exc, DECODING_FIELDS))
    )


def _read_preset_file(path: Traversable, origin: str) -> dict[str, Preset]:
    if isinstance(path, Path) and path.exists() and not path.is_dir():
        # A user's file (the bundled one is package data), looked at before it is opened: a
        # named pipe would block the read forever. (A directory fails at once, below.)
        check_input_file(
            path,
            f"presets file {origin}",
            MAX_SETTINGS_FILE_BYTES,
            "a presets file holds a few tables; point ARTICLEGEN_PRESETS_FILE at one",
            ConfigError,
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"presets file {origin} does not exist: fix ARTICLEGEN_PRESETS_FILE or unset it"
        ) from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(
            f"cannot read presets file {origin}: {exc.strerror}; point ARTICLEGEN_PRESETS_FILE "
            "at a TOML file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"presets file {origin} is not valid TOML: {exc}") from exc
    presets = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"presets file {origin}: `{name}` must be a table such as [{name}], not a value"
            )
        values = dict(table)
        description = str(values.pop("description", ""))
        where = f"presets file {origin}, preset [{name}]: "
        style = {k: values.pop(k) for k in STYLE_FIELDS if k in values}
        # Validate now, so a broken preset fails at start-up and not on the 900th prompt.
        try:
            settle(values)
        except ValidationError as exc:
            raise ConfigError(
                where + "; ".join(describe_validation_error(exc, (*DECODING_FIELDS, *STYLE_FIELDS)))
            ) from exc
        try:
            framing = settle_style(parse_style(style))
        except ConfigError as exc:
            raise ConfigError(where + str(exc)) from None
        presets[name] = Preset(name=name, description=description, values=values, style=framing)
    return presets


def load_presets(user_file: Path | None = None) -> PresetCatalog:
    """The bundled presets, plus those of `user_file` (which win on a shared name)."""
    bundled = files("articlegen.generator") / "presets.toml"
    presets = _read_preset_file(bundled, "generator/presets.toml")
    if user_file is not None:
        presets.update(_read_preset_file(user_file, str(user_file)))
    return PresetCatalog(presets)
