"""Generation: models, decoding, batched generation, post-processing, metrics, templates.

Imports without Prefect. The names below are the public surface; those that need torch are
loaded on first use (PEP 562), so importing `generator` for its configuration stays fast.
"""

from importlib import import_module
from typing import Any

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
from generator.metrics import ArticleMetrics, QualityThresholds, article_metrics, batch_metrics
from generator.postprocess import PostprocessConfig, ProcessedText, postprocess
from generator.templates import Rendered, Templates

_LAZY = {
    "ArticleFailure": "generator.articles",
    "ArticleInput": "generator.articles",
    "ArticleWriter": "generator.articles",
    "WriteResult": "generator.articles",
    "WrittenArticle": "generator.articles",
    "Engine": "generator.engine",
    "Generation": "generator.engine",
    "GenerationFailure": "generator.engine",
    "GenerationRequest": "generator.engine",
    "derive_seed": "generator.engine",
    "fresh_seed": "generator.engine",
    "LoadedModel": "generator.loading",
    "ModelSpec": "generator.loading",
    "load_model": "generator.loading",
    "init_model": "generator.model_init",
}

__all__ = [
    "DECODING_FIELDS",
    "DEFAULT_PRESET",
    "ArticleMetrics",
    "DecodingConfig",
    "DecodingWarning",
    "Preset",
    "PresetCatalog",
    "PostprocessConfig",
    "ProcessedText",
    "QualityThresholds",
    "Rendered",
    "Templates",
    "article_metrics",
    "batch_metrics",
    "describe_validation_error",
    "load_presets",
    "postprocess",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
