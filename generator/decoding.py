"""Decoding configuration: the settings of one article, and overrides of some of them.

A prompt's decoding settings are overrides (the run's over the prompt's own) merged over its
preset (`generator.presets`), merged over the field defaults of `DecodingConfig`. Overrides are
checked field by field where they enter (a CSV cell, `--set`, a flow parameter) and carried as
a typed `DecodingOverrides`; the merged `DecodingConfig` checks how the fields relate: an
impossible combination raises, a harmless contradiction warns with `DecodingWarning`.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from articlegen.core.bounds import MAX_NEW_TOKENS, MAX_SEED, MAX_TOKEN_ID
from articlegen.core.describe import describe_validation_error
from articlegen.core.errors import ConfigError, InputError

__all__ = [
    "DECODING_FIELDS",
    "DEFAULT_PRESET",
    "DecodingConfig",
    "DecodingOverrides",
    "DecodingWarning",
    "Resolved",
    "parse_overrides",
    "settle",
    "split_assignments",
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
_WHOLE = re.compile(r"\s*[+-]?\d+\s*\Z")  # a token id written as text


def _one_or_array(value: object, of: str, strip: bool = False) -> object:
    # CSV cells and CLI options arrive as text: one value, or a JSON array of them.
    if isinstance(value, str):
        text = value.strip() if strip else value  # a stop string's spaces are its own
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON array of {of} ({exc.msg})") from exc
        return (text,)
    return value


def _no_empty_stop_string(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is not None and any(s == "" for s in value):
        raise ValueError("an empty stop string would stop every article at once")
    return value


StopStrings = Annotated[
    tuple[str, ...],
    BeforeValidator(lambda v: _one_or_array(v, "strings")),
    AfterValidator(_no_empty_stop_string),
]


def _token_ids(value: object) -> object:
    parsed = _one_or_array((value,) if type(value) is int else value, "token ids", True)
    # JSON's true and 1.0, and the text "1.0", would pass as id 1: an id is a whole number.
    for item in parsed if isinstance(parsed, list | tuple) else ():
        if isinstance(item, bool | float) or (isinstance(item, str) and not _WHOLE.match(item)):
            raise ValueError(f"token ids are whole numbers, got {json.dumps(item)}")
    return parsed


StopTokenIds = Annotated[
    tuple[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)], ...], BeforeValidator(_token_ids)
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
        le=MAX_NEW_TOKENS,
        description="Most tokens to generate per article. 256 tokens are about 190 words.",
    )
    min_new_tokens: int = Field(
        default=0,
        ge=0,
        le=MAX_NEW_TOKENS,
        description="Fewest tokens to generate before end-of-text is allowed.",
    )
    stop_strings: StopStrings = Field(
        default=(),
        max_length=16,
        description="Stop an article when it produces one of these strings. In a CSV cell: one "
        'string, or a JSON array such as ["\\n\\n", "THE END"].',
    )
    stop_token_ids: StopTokenIds = Field(
        default=(),
        max_length=16,
        description="End an article at these token ids too, besides the model's own end-of-text "
        "tokens (tokenizer's and generation_config's). In a CSV cell: an id or a JSON array.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Base seed; each article's seed derives from it and the article's identity. "
        "Unset: a fresh seed per article, recorded with it.",
    )
    noise_sigma: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="Standard deviation of Gaussian noise added to the input word embeddings, "
        "relative to their RMS as the model feeds them forward; 0 turns it off.",
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
        self, eos_token_id: int | list[int] | None, pad_token_id: int | None, **extra: Any
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


class _Overrides(BaseModel):
    """Some decoding settings, each checked alone (name, type, range); the rest unset.

    Relations between settings wait for the merge with a preset: `num_beams = 4` is fine for a
    prompt on the `beam` preset, impossible on `nucleus`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_serializer(mode="wrap")
    def _only_what_was_set(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Stored and sent on as what the user gave, never as seventeen nulls: an override left
        # out must not override anything when it is read back.
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if k in self.model_fields_set}

    def settings(self) -> dict[str, Any]:
        """The settings given, as JSON values."""
        return self.model_dump(mode="json")

    def __bool__(self) -> bool:
        return bool(self.model_fields_set)


# Every field of DecodingConfig, optional, with the same type, bounds and description: the bounds
# are written once, above. mypy sees the base class, which is all the callers use.
if TYPE_CHECKING:
    DecodingOverrides = _Overrides
else:
    DecodingOverrides = create_model(
        "DecodingOverrides",
        __base__=_Overrides,
        __module__=__name__,
        **{
            name: (field.annotation | None, FieldInfo.merge_field_infos(field, default=None))
            for name, field in DecodingConfig.model_fields.items()
        },
    )


def split_assignments(lines: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` lines (`--set` options, a form's settings box) as a dict of text values;
    blank lines are skipped. `InputError` names the first line that is not an assignment (by
    its number, from 1)."""
    pairs = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{number}: write NAME=VALUE, e.g. temperature=0.8; got {line!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_overrides(values: Mapping[str, Any] | _Overrides, where: str = "") -> _Overrides:
    """`values` as typed overrides; `ConfigError` naming every bad setting (after `where`)."""
    if isinstance(values, _Overrides):
        return values
    try:
        return DecodingOverrides.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc, DECODING_FIELDS))
        raise ConfigError(where + problems) from None


@dataclass(frozen=True)
class Resolved:
    """A merged, validated configuration and the harmless contradictions it contains, phrased
    for the user (each setting that is ignored, and why)."""

    config: DecodingConfig
    warnings: tuple[str, ...] = ()


def settle(values: Mapping[str, Any]) -> Resolved:
    """Validate merged settings as one configuration, collecting its `DecodingWarning`s as
    text rather than emitting them. Raises pydantic's `ValidationError`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DecodingWarning)
        config = DecodingConfig.model_validate(values)
    notes = [str(w.message) for w in caught if issubclass(w.category, DecodingWarning)]
    return Resolved(config, tuple(dict.fromkeys(notes)))
