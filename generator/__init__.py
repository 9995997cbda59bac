"""Generation: models, prompt formats, decoding, batched generation, post-processing, metrics,
templates.

Imports without Prefect. The names below are the public surface; those that need torch are
loaded on first use (PEP 562), so importing `generator` for its configuration stays fast.
"""

from importlib import import_module
from typing import Any

from articlegen.generator.chat import (
    STYLE_FIELDS,
    FramedPrompt,
    PromptStyle,
    frame_prompt,
    has_chat_template,
    parse_style,
    settle_style,
    used_format,
)
from articlegen.generator.decoding import (
    DECODING_FIELDS,
    DEFAULT_PRESET,
    DecodingConfig,
    DecodingOverrides,
    DecodingWarning,
    Resolved,
    parse_overrides,
)
from articlegen.generator.metrics import (
    ArticleMetrics,
    QualityThresholds,
    article_metrics,
    batch_metrics,
)
from articlegen.generator.postprocess import PostprocessConfig, ProcessedText, postprocess
from articlegen.generator.presets import Preset, PresetCatalog, load_presets
from articlegen.generator.templates import Rendered, Templates

_LAZY = {
    "ArticleFailure": "articlegen.generator.articles",
    "ArticleInput": "articlegen.generator.articles",
    "ArticleWriter": "articlegen.generator.articles",
    "WriteResult": "articlegen.generator.articles",
    "WrittenArticle": "articlegen.generator.articles",
    "Engine": "articlegen.generator.engine",
    "Generation": "articlegen.generator.requests",
    "GenerationFailure": "articlegen.generator.requests",
    "GenerationRequest": "articlegen.generator.requests",
    "derive_seed": "articlegen.generator.seeding",
    "fresh_seed": "articlegen.generator.seeding",
    "LoadedModel": "articlegen.generator.loading",
    "ModelSpec": "articlegen.generator.loading",
    "load_model": "articlegen.generator.loading",
    "init_model": "articlegen.generator.model_init",
}

__all__ = [
    "DECODING_FIELDS",
    "DEFAULT_PRESET",
    "STYLE_FIELDS",
    "ArticleMetrics",
    "DecodingConfig",
    "DecodingOverrides",
    "DecodingWarning",
    "FramedPrompt",
    "Preset",
    "PresetCatalog",
    "PostprocessConfig",
    "ProcessedText",
    "PromptStyle",
    "QualityThresholds",
    "Rendered",
    "Resolved",
    "Templates",
    "article_metrics",
    "batch_metrics",
    "frame_prompt",
    "has_chat_template",
    "load_presets",
    "parse_overrides",
    "parse_style",
    "postprocess",
    "settle_style",
    "used_format",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'articlegen.generator' has no attribute {name!r}")
