"""Generation: decoding configuration and presets (models, batching and post-processing follow).

Imports without Prefect, so every piece is usable and testable on its own.
"""

from generator.decoding import (
    DECODING_FIELDS,
    DEFAULT_PRESET,
    DecodingConfig,
    DecodingWarning,
    Preset,
    PresetCatalog,
    describe_validation_error,
    load_presets,
)

__all__ = [
    "DECODING_FIELDS",
    "DEFAULT_PRESET",
    "DecodingConfig",
    "DecodingWarning",
    "Preset",
    "PresetCatalog",
    "describe_validation_error",
    "load_presets",
]
