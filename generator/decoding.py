"""Decoding configuration: one validated model, named presets, and their merge.

A prompt's decoding settings are its overrides merged over its preset, merged over the field
defaults below. The result is a frozen `DecodingConfig`; an impossible combination never gets
that far (it raises `ConfigError`), a harmless contradiction warns once with `DecodingWarning`.
"""

from __future__ import annotations

import difflib
import functools
import json
import tomllib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from articlegen.errors import ConfigError

__all__ = [
    "DECODING_FIELDS",
    "DEFAULT_PRESET",
    "DecodingConfig",
    "DecodingWarning",
    "Preset",
    "PresetCatalog",
    "describe_error",
    "describe_validation_error",
    "load_presets",
    "validate_overrides",
]

DEFAULT_PRESET = "nucleus"

# Values at which a sampling control does nothing; used to tell "set" from "neutral" below.
_NEUTRAL_SAMPLING: dict[str, object] = {
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "typical_p": 1.0,
    "min_p": 0.0,
}
_BEAM_ONLY = ("length_penalty", "early_stopping")


def _parse_stop_strings(value: object) -> object:
    # CSV cells and CLI options arrive as text: one stop string, or a JSON array of them.
    if isinstance(value, str):
        if value.startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON array of strings ({exc.msg})") from exc
        return (value,)
    return value


def _no_empty_stop_string(value: tuple[str, ...]) -> tuple[str, ...]:
    if any(s == "" for s in value):
        raise ValueError("an empty stop string would stop every article at once")
    return value


StopStrings = Annotated[
    tuple[str, ...], BeforeValidator(_parse_stop_strings), AfterValidator(_no_empty_stop_string)
]


class DecodingWarning(UserWarning):
    """A decoding setting that contradicts another harmlessly (it is ignored)."""


class DecodingConfig(BaseModel):
    """How tokens are chosen. Field defaults are neutral: plain sampling at temperature 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    do_sample: bool = Field(
        default=True,
        description="Sample the next token (true) or take the most likely one (false: greedy or "
        "beam search).",
    )
    temperature: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="Divides the logits before sampling; below 1 sharpens, above 1 flattens.",
    )
    top_k: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Sample only among the k most likely tokens; 0 turns it off.",
    )
    top_p: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Nucleus: sample from the smallest set of tokens whose mass reaches p; 1 turns "
        "it off.",
    )
    typical_p: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Locally typical sampling mass; 1 turns it off.",
    )
    min_p: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Drop tokens less likely than min_p times the top token's probability; 0 "
        "turns it off.",
    )
    repetition_penalty: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Divides the logits of tokens already present (CTRL, Keskar et al. 2019); 1 "
        "turns it off.",
    )
    no_repeat_ngram_size: int = Field(
        default=0,
        ge=0,
        le=20,
        description="Never repeat an n-gram of this size; 0 turns it off.",
    )
    num_beams: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Beam width; 1 means no beam search.",
    )
    length_penalty: float = Field(
        default=1.0,
        ge=-10,
        le=10,
        description="Beam search: exponent on length in the score; above 0 favours longer text.",
    )
    early_stopping: bool = Field(
        default=False,
        description="Beam search: stop once num_beams finished candidates exist.",
    )
    max_new_tokens: int = Field(
        default=256,
        ge=1,
        le=8192,
        description="Most tokens to generate per article. 256 tokens are about 190 words.",
    )
    min_new_tokens: int = Field(
        default=0,
        ge=0,
        le=8192,
        description="Fewest tokens to generate before end-of-text is allowed.",
    )
    stop_strings: StopStrings = Field(
        default=(),
        max_length=16,
        description="Stop an article when it produces one of these strings. In a CSV cell: one "
        'string, or a JSON array such as ["\\n\\n", "THE END"].',
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Base seed; each article's seed derives from it and the article's identity. "
        "Unset: a fresh seed per article, recorded with it.",
    )
    noise_sigma: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="Standard deviation of Gaussian noise added to the input word embeddings, "
        "relative to the RMS of the model's embedding matrix; 0 turns it off.",
    )
    noise_every_step: bool = Field(
        default=False,
        description="Add embedding noise at every generated step, not only to the prompt.",
    )

    @model_validator(mode="after")
    def _check_relations(self) -> DecodingConfig:
        """Relations between fields, in one place: raise on the impossible, warn on the moot."""
        # 1. Impossible: a floor above the ceiling.
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"`min_new_tokens` ({self.min_new_tokens}) exceeds `max_new_tokens` "
                f"({self.max_new_tokens}): lower `min_new_tokens` or raise `max_new_tokens`"
            )
        # 2. Unsupported: beam search here is deterministic; per-article seeds make sampling
        #    reproducible only without beams, and per-step noise has no meaning per beam.
        if self.num_beams > 1 and self.do_sample:
            raise ValueError(
                f"`num_beams` is {self.num_beams} with `do_sample` true (beam sampling), which "
                "articlegen does not support: set `do_sample` false for beam search, or "
                "`num_beams` 1 for sampling"
            )
        if self.num_beams > 1 and self.noise_every_step:
            raise ValueError(
                "`noise_every_step` needs `num_beams` 1: beam search takes prompt noise only; "
                "drop `noise_every_step` or set `num_beams` 1"
            )
        # 3. Moot: sampling controls under greedy or beam decoding are ignored by the decoder.
        if not self.do_sample:
            for name, neutral in _NEUTRAL_SAMPLING.items():
                if name in self.model_fields_set and getattr(self, name) != neutral:
                    warnings.warn(
                        f"`{name}` is set but decoding is greedy or beam search "
                        f"(`do_sample` is false), so it is ignored: use a sampling preset such "
                        f"as `{DEFAULT_PRESET}`, or drop `{name}`",
                        DecodingWarning,
                        stacklevel=2,
                    )
        # 4. Moot: beam-only controls without beams.
        if self.num_beams == 1:
            for name in _BEAM_ONLY:
                if name in self.model_fields_set:
                    warnings.warn(
                        f"`{name}` only affects beam search but `num_beams` is 1: set "
                        f"`num_beams` above 1, or drop `{name}`",
                        DecodingWarning,
                        stacklevel=2,
                    )
        # 5. Moot: per-step noise with no noise.
        if self.noise_every_step and self.noise_sigma == 0:
            warnings.warn(
                "`noise_every_step` is true but `noise_sigma` is 0, so no noise is added: set "
                "`noise_sigma` above 0, or drop `noise_every_step`",
                DecodingWarning,
                stacklevel=2,
            )
        return self

    def to_generation_config(
        self, eos_token_id: int | None, pad_token_id: int | None, **extra: Any
    ) -> Any:
        """The equivalent `transformers.GenerationConfig` (seed and noise are articlegen's own).

        Sampling controls are set only when sampling, as transformers expects.
        """
        # Imported here: transformers takes seconds to import and most callers never need it.
        from transformers import GenerationConfig

        sampling: dict[str, Any] = {}
        if self.do_sample:
            sampling = {
                "temperature": self.temperature,
                "top_k": self.top_k or None,
                "top_p": self.top_p,
                "typical_p": self.typical_p,
                "min_p": self.min_p or None,
            }
        return GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=self.do_sample,
            num_beams=self.num_beams,
            length_penalty=self.length_penalty,
            early_stopping=self.early_stopping,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size or None,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens or None,
            stop_strings=list(self.stop_strings) or None,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **sampling,
            **extra,
        )


DECODING_FIELDS: tuple[str, ...] = tuple(DecodingConfig.model_fields)


def validate_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check each setting alone (name, type, range) and return them typed, as JSON values.

    Relations between settings wait for the merge with a preset: `num_beams = 4` is fine for
    a prompt on the `beam` preset, impossible on `nucleus`. Raises `ConfigError`.
    """
    problems, typed = [], {}
    for name, value in values.items():
        if name not in DecodingConfig.model_fields:
            close = difflib.get_close_matches(name, DECODING_FIELDS, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            problems.append(f"`{name}`: unknown setting{hint}")
            continue
        try:
            typed[name] = _field_adapter(name).dump_python(
                _field_adapter(name).validate_python(value), mode="json"
            )
        except ValidationError as exc:
            problems += [describe_error({**e, "loc": (name,)}) for e in exc.errors()]
    if problems:
        raise ConfigError("; ".join(problems))
    return typed


@functools.cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    field = DecodingConfig.model_fields[name]
    # The field's type with its constraints (ranges, lengths), as one validator.
    return TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]


def describe_error(err: ErrorDetails, known: Sequence[str] = DECODING_FIELDS) -> str:
    """Phrase one pydantic error as "`field`: what is wrong, got VALUE" for a user to read."""
    field = ".".join(str(part) for part in err["loc"])
    # pydantic prefixes custom messages with "Value error, "; the rest already reads well.
    message = err["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(field, known, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return f"`{field}`: unknown setting{hint}"
    return f"`{field}`: {message}, got {err['input']!r}" if field else message


def describe_validation_error(
    exc: ValidationError, known: Sequence[str] = DECODING_FIELDS
) -> list[str]:
    """`describe_error` for each error of `exc`."""
    return [describe_error(err, known) for err in exc.errors()]


@dataclass(frozen=True)
class Preset:
    """A named set of decoding overrides, with the description shown by `articlegen presets`."""

    name: str
    description: str
    values: Mapping[str, Any]


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
            close = difflib.get_close_matches(name, self._presets, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise ConfigError(
                f"unknown preset `{name}`: {hint}known presets are "
                f"{', '.join(self._presets)} (add your own with ARTICLEGEN_PRESETS_FILE)"
            ) from None

    def merge(
        self, preset: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The raw settings: `overrides` over the preset (default `nucleus`), not yet validated."""
        return {**self.get(preset or DEFAULT_PRESET).values, **(overrides or {})}

    def resolve(
        self, preset: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> DecodingConfig:
        """Merge `overrides` over the preset over the field defaults, and validate.

        Raises `ConfigError` naming each bad field; warns `DecodingWarning` on moot settings.
        """
        try:
            return DecodingConfig.model_validate(self.merge(preset, overrides))
        except ValidationError as exc:
            raise ConfigError(
                f"decoding settings (preset `{preset or DEFAULT_PRESET}`): "
                + "; ".join(describe_validation_error(exc))
            ) from exc


def _read_preset_file(path: Traversable, origin: str) -> dict[str, Preset]:
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
        # Validate now, so a broken preset fails at start-up and not on the 900th prompt.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DecodingWarning)
                DecodingConfig.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(
                f"presets file {origin}, preset [{name}]: "
                + "; ".join(describe_validation_error(exc))
            ) from exc
        presets[name] = Preset(name=name, description=description, values=values)
    return presets


def load_presets(user_file: Path | None = None) -> PresetCatalog:
    """The bundled presets, plus those of `user_file` (which win on a shared name)."""
    presets = _read_preset_file(files("generator") / "presets.toml", "generator/presets.toml")
    if user_file is not None:
        presets.update(_read_preset_file(user_file, str(user_file)))
    return PresetCatalog(presets)
