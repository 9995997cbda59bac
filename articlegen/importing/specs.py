"""`PromptSpec`: one validated prompt as it comes in, whatever its source (a CSV row, a flow).

A spec is checked whole before anything is written: field types and ranges here, each decoding
override alone (`DecodingOverrides`); how its overrides meet its preset is checked by the
import (`articlegen.importing.prompts_csv`), or any other source, before the spec is stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from articlegen.core.bounds import (
    MAX_EXTERNAL_ID,
    MAX_NAME,
    MAX_PROMPT,
    MAX_TAGS,
    MAX_TOPIC,
    MAX_VARIANTS,
    PRIORITY_RANGE,
    PromptFormat,
)
from articlegen.generator.decoding import DecodingOverrides

__all__ = ["BASE_COLUMNS", "EXTRA_PREFIX", "PromptSpec"]

# Columns a prompts CSV may have besides the decoding settings and the `x_` client fields.
BASE_COLUMNS = (
    "topic",
    "prompt",
    "external_id",
    "template",
    "preset",
    "prompt_format",
    "system",
    "tags",
    "priority",
    "variants",
)
EXTRA_PREFIX = "x_"
# Fields added after prompts were first stored: left unset, they stay out of the content key,
# so a prompt imported before them keeps its identity when its file is imported again.
_LATER_FIELDS = ("prompt_format", "system")


class PromptSpec(BaseModel):
    """A prompt ready to be stored: what to write about, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    topic: str = Field(
        min_length=1,
        max_length=MAX_TOPIC,
        description="What the article is about; always required.",
    )
    prompt: str | None = Field(
        default=None,
        max_length=MAX_PROMPT,
        description="The text the model continues (in chat form, the user's message); when "
        "empty it is built from the prompt template, the topic and the client fields.",
    )
    external_id: str | None = Field(
        default=None,
        max_length=MAX_EXTERNAL_ID,
        description="The client's id. Re-importing a row with a known id updates that prompt "
        "while it is pending.",
    )
    template: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Name of the article template; empty means the default.",
    )
    preset: str | None = Field(
        default=None, max_length=MAX_NAME, description="Decoding preset; empty means `nucleus`."
    )
    prompt_format: PromptFormat | None = Field(
        default=None,
        description="`plain`, `chat` or `auto` (`generator.chat`); empty means the preset's, "
        "else ARTICLEGEN_PROMPT_FORMAT.",
    )
    system: str | None = Field(
        default=None,
        max_length=MAX_PROMPT,
        description="The system message (chat form only); empty means the preset's, else "
        "ARTICLEGEN_SYSTEM_MESSAGE.",
    )
    decoding: DecodingOverrides = Field(
        default_factory=DecodingOverrides,
        description="Decoding overrides, merged over the preset.",
    )
    tags: tuple[str, ...] = Field(
        default=(), max_length=MAX_TAGS, description="Labels for filtering."
    )
    priority: int = Field(
        default=0,
        ge=PRIORITY_RANGE[0],
        le=PRIORITY_RANGE[1],
        description="Higher runs first; ties go by import order.",
    )
    variants: int = Field(
        default=1, ge=1, le=MAX_VARIANTS, description="How many different articles to write."
    )
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="Client fields (the CSV's `x_` columns without the prefix), for templates.",
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        # One cell holds them all: "travel; food" or "travel, food".
        if isinstance(value, str):
            parts = value.replace(";", ",").split(",")
            return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
        return value

    def columns(self) -> dict[str, Any]:
        """Its values for the `prompts` table (the decoding overrides as the ones given)."""
        return {**self.model_dump(mode="json"), "tags": list(self.tags)}

    def content_key(self) -> str:
        """A digest of everything the prompt says: its identity when it has no external id.

        Stable across versions: a re-import of the same row must find the prompt it stored.
        """
        payload = self.model_dump(mode="json", exclude={"external_id"})
        for name in _LATER_FIELDS:
            if payload[name] is None:
                del payload[name]
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
