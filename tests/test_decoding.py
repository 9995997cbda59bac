"""Decoding configuration: bounds, relations (raise or warn exactly once), presets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from articlegen.core.errors import ConfigError
from articlegen.generator import (
    DecodingConfig,
    DecodingOverrides,
    DecodingWarning,
    PresetCatalog,
    load_presets,
    parse_overrides,
)

VALID: list[dict[str, Any]] = [
    {},
    {"do_sample": False},
    {"do_sample": False, "num_beams": 4, "length_penalty": 1.2, "early_stopping": True},
    {"temperature": 0.7, "top_p": 0.9, "top_k": 50, "min_p": 0.05, "typical_p": 0.95},
    {"max_new_tokens": 64, "min_new_tokens": 64, "seed": 2**63 - 1},
    {"noise_sigma": 0.1, "noise_every_step": True, "do_sample": False},
    {"stop_strings": ["\n\n", "THE END"], "repetition_penalty": 1.3, "no_repeat_ngram_size": 3},
]


@pytest.mark.parametrize("values", VALID)
def test_valid_configs_give_no_warning(values: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = DecodingConfig.model_validate(values)
    for name, value in values.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(config, name) == expected


INVALID = [
    ({"temperature": -0.5}, "temperature", "greater than 0"),
    ({"temperature": 0}, "temperature", "greater than 0"),
    ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"num_beams": 0}, "num_beams", "greater than or equal to 1"),
    ({"top_k": -1}, "top_k", "greater than or equal to 0"),
    ({"max_new_tokens": 0}, "max_new_tokens", "greater than or equal to 1"),
    ({"min_p": 1}, "min_p", "less than 1"),
    ({"noise_sigma": -0.1}, "noise_sigma", "greater than or equal to 0"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"stop_strings": [""]}, "stop_strings", "empty stop string"),
    ({"stop_strings": "[not json"}, "stop_strings", "JSON array"),
    ({"temprature": 0.5}, "temprature", "did you mean `temperature`?"),
    ({"min_new_tokens": 300, "max_new_tokens": 200}, "min_new_tokens", "exceeds"),
    ({"num_beams": 4}, "num_beams", "beam sampling"),
    ({"num_beams": 4, "do_sample": False, "noise_every_step": True}, "noise_every_step", "needs"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), INVALID)
def test_invalid_configs_raise_naming_the_field(
    catalog: PresetCatalog, overrides: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        catalog.resolve("nucleus", overrides)
    message = str(caught.value)
    assert f"`{field}`" in message
    assert fragment in message


MOOT = [
    ({"do_sample": False, "temperature": 0.7}, "`temperature` is set but decoding is greedy"),
    ({"do_sample": False, "top_p": 0.9}, "`top_p` is set but decoding is greedy"),
    ({"do_sample": False, "top_k": 20}, "`top_k` is set but decoding is greedy"),
    ({"length_penalty": 2.0}, "`length_penalty` only affects beam search"),
    ({"early_stopping": True}, "`early_stopping` only affects beam search"),
    ({"noise_every_step": True}, "`noise_every_step` is true but `noise_sigma` is 0"),
]


@pytest.mark.parametrize(("values", "message"), MOOT)
def test_moot_settings_warn_exactly_once(values: dict[str, Any], message: str) -> None:
    with pytest.warns(DecodingWarning) as record:
        DecodingConfig.model_validate(values)
    assert len(record) == 1
    assert message in str(record[0].message)


def test_neutral_sampling_value_under_greedy_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DecodingConfig.model_validate({"do_sample": False, "temperature": 1.0})


def test_overrides_merge_over_preset_over_defaults(catalog: PresetCatalog) -> None:
    config = catalog.resolve("precise", {"temperature": 0.5, "max_new_tokens": 99})
    assert config.temperature == 0.5  # override wins
    assert config.top_p == 0.85  # from the preset
    assert config.max_new_tokens == 99
    assert config.num_beams == 1  # default
    assert catalog.resolve(None, {}).top_p == 0.95  # no preset means nucleus


def test_config_is_frozen(catalog: PresetCatalog) -> None:
    config = catalog.resolve("greedy")
    with pytest.raises(ValueError, match="frozen"):
        config.temperature = 0.3  # type: ignore[misc]


def test_unknown_preset_suggests_the_closest(catalog: PresetCatalog) -> None:
    with pytest.raises(ConfigError, match=r"unknown preset `nucleas`: did you mean `nucleus`\?"):
        catalog.resolve("nucleas")


def test_every_bundled_preset_resolves_without_warning(catalog: PresetCatalog) -> None:
    assert {"greedy", "beam", "top_k", "nucleus", "creative", "precise"} <= set(catalog.names())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for preset in catalog:
            assert preset.description
            catalog.resolve(preset.name)


def test_user_presets_add_and_override_by_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[house]\ndescription = "Our style"\ntemperature = 0.6\ntop_p = 0.8\n'
        "[nucleus]\ntop_p = 0.5\n",
        encoding="utf-8",
    )
    catalog = load_presets(path)
    assert catalog.resolve("house").temperature == 0.6
    assert catalog.resolve("nucleus").top_p == 0.5
    assert catalog.resolve("greedy").do_sample is False  # bundled ones stay


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[bad]\ntop_p = 2\n", "preset [bad]: `top_p`: input should be less than or equal to 1"),
        ("[bad]\ntemprature = 2\n", "preset [bad]: `temprature`: unknown setting (did you mean"),
        ("top_p = 0.5\n", "`top_p` must be a table such as [top_p]"),
        ("[bad\n", "is not valid TOML"),
    ],
)
def test_bad_user_presets_file_is_rejected_at_load(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_presets(path)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_missing_user_presets_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: fix ARTICLEGEN_PRESETS_FILE"):
        load_presets(tmp_path / "nope.toml")


def test_stop_strings_from_text() -> None:
    assert DecodingConfig.model_validate({"stop_strings": "END"}).stop_strings == ("END",)
    parsed = DecodingConfig.model_validate({"stop_strings": '["\\n\\n", "END"]'})
    assert parsed.stop_strings == ("\n\n", "END")


def test_overrides_keep_only_what_was_given_typed() -> None:
    overrides = parse_overrides({"temperature": "0.8", "do_sample": "false", "seed": None})
    # Typed as the decoder reads them; an explicit null (a fresh seed) is kept, the rest unset.
    assert overrides.settings() == {"temperature": 0.8, "do_sample": False, "seed": None}
    assert DecodingOverrides().settings() == {}
    assert not DecodingOverrides()
    # Stored and read back (a job's parameters, a prompt's column) they stay the same.
    again = parse_overrides(json.loads(json.dumps(overrides.settings())))
    assert again.settings() == overrides.settings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temprature": 1}, "`temprature`: unknown setting (did you mean `temperature`?)"),
        ({"top_p": "1.5"}, "`top_p`: input should be less than or equal to 1, got '1.5'"),
        ({"max_new_tokens": 9000}, "`max_new_tokens`: input should be less than or equal to 8192"),
        ({"stop_strings": [""]}, "`stop_strings`: an empty stop string would stop every article"),
    ],
)
def test_overrides_are_checked_one_by_one_where_they_enter(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_overrides(values, where="--set: ")
    assert str(caught.value).startswith("--set: " + message)


def test_relations_wait_for_the_preset(catalog: PresetCatalog) -> None:
    # Beams are fine alone; with the sampling preset they are impossible, with beam they fit.
    overrides = parse_overrides({"num_beams": 4})
    with pytest.raises(ConfigError, match="beam sampling"):
        catalog.resolve_with_warnings("nucleus", overrides)
    assert catalog.resolve_with_warnings("beam", overrides).config.num_beams == 4
    noted = catalog.resolve_with_warnings("greedy", parse_overrides({"top_p": 0.5}))
    assert noted.warnings == (
        "`top_p` is set but decoding is greedy or beam search (`do_sample` is false), so it is "
        "ignored: use a sampling preset such as `nucleus`, or drop `top_p`",
    )
