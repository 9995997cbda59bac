"""The generate-articles form in Prefect's UI: flat fields in, one `GenerateParams` out.

A person starting a custom run sees fields with working defaults (0 and "" mean "not set", so
the form needs no None toggles), the bundled presets as a dropdown, the six decoding settings
people change most as their own fields and a JSON box for the rest. Fields only
commands set (shards, resumed jobs, the CLI's job id) are not on the form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, ValidationError

from articlegen.core.describe import describe_error
from articlegen.core.errors import ConfigError
from articlegen.generator.chat import parse_style
from articlegen.runs.params import GenerateParams

__all__ = [
    "COMMON_DECODING",
    "FORM_DEFAULTS",
    "PRESET_NAMES",
    "FormDecimal",
    "FormInteger",
    "FormPromptFormat",
    "PresetName",
    "params_from_form",
]

# The bundled presets (generator/presets.toml; a test keeps the two in step). Presets of an
# ARTICLEGEN_PRESETS_FILE are not listed here: prompts name them in their own `preset` column.
PresetName = Literal[
    "nucleus", "greedy", "beam", "top_k", "creative", "precise", "noisy_greedy", "noisy_beam"
]  # fmt: skip
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)

# An optional number is a text field, empty by default. Prefect's form sends a field left alone
# as its default; a `float | None` field would need a None/number toggle to be left empty (and
# sends null, which a plain number field refuses). The pattern lets the form refuse what is not a
# number as it is typed; the run reads the text as the decoder's type (`parse_overrides`).
_DECIMAL = r"^\s*$|^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER = r"^\s*$|^\s*[-+]?\d+\s*$"


def _text(value: object) -> object:
    # A Python caller may pass 0.8 rather than "0.8"; booleans are not numbers here.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


FormDecimal = Annotated[str, Field(pattern=_DECIMAL), BeforeValidator(_text)]
FormInteger = Annotated[str, Field(pattern=_INTEGER), BeforeValidator(_text)]

# The decoding settings with a field of their own; the rest go in the JSON box.
COMMON_DECODING = ("temperature", "top_p", "top_k", "max_new_tokens", "seed", "noise_sigma")


# What each field holds when the form leaves it alone.
FORM_DEFAULTS: dict[str, Any] = {
    "limit": 0, "preset": "nucleus", **dict.fromkeys(COMMON_DECODING, ""), "more_decoding": "",
    "prompt_format": "", "system": "", "no_system": False, "model": "", "template": "",
    "tags": (), "variants": 0, "batch_size": 0, "order": "priority", "dry_run": False,
}  # fmt: skip

# The prompt format a run may set over every prompt's; empty: each prompt's own.
FormPromptFormat = Literal["", "plain", "chat", "auto"]


def params_from_form(fields: Mapping[str, Any]) -> GenerateParams:
    """The run's parameters from the form's fields (`FORM_DEFAULTS`' names); `ConfigError`
    names each field at fault."""
    form = {**FORM_DEFAULTS, **fields}
    if form["no_system"] and form["system"].strip():
        raise ConfigError("system gives a message and no_system asks for none: keep one")
    given = {k: form[k].strip() for k in COMMON_DECODING if form[k].strip()}
    extra = _json_object(form["more_decoding"])
    twice = sorted(set(given) & set(extra))
    if twice:
        raise ConfigError(
            f"{', '.join(twice)} set both in its own field and in more_decoding: keep one"
        )
    values: dict[str, Any] = {
        "limit": form["limit"] or None,
        "batch_size": form["batch_size"] or None,
        "model": form["model"].strip() or None,
        "preset": form["preset"],
        "template": form["template"].strip() or None,
        "tags": [t for t in form["tags"] if t.strip()],
        "variants": form["variants"] or None,
        "order": form["order"],
        "dry_run": form["dry_run"],
        "overrides": {**extra, **given},
        # An empty field can only mean "not set" (the form has no None): `no_system` is the
        # CLI's `--system ""`, no system message whatever the prompts' own layers give.
        "style": parse_style(
            {"prompt_format": form["prompt_format"], "system": form["system"]},
            clears=form["no_system"],
        ),
    }
    try:
        return GenerateParams(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe_error(e) for e in exc.errors())) from None


def _json_object(text: str) -> dict[str, Any]:
    """The JSON box's settings: empty, or a JSON object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f'more_decoding: not JSON ({exc}): write an object, e.g. {{"repetition_penalty": 1.2}}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"more_decoding: give a JSON object of settings, not {text.strip()!r}")
    return value
