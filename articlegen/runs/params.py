"""`GenerateParams`: what one generation run does, validated once where it enters.

The CLI builds one from its options, the Prefect UI from its form, `jobs resume` from a dead
job's stored parameters; every step of the run then reads the same frozen object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from articlegen.core.bounds import MAX_BATCH_SIZE, MAX_RUN_LIMIT, MAX_SHARDS, MAX_VARIANTS
from articlegen.core.errors import ConfigError
from articlegen.generator.chat import PromptStyle
from articlegen.generator.decoding import DecodingOverrides, parse_overrides

if TYPE_CHECKING:
    from articlegen.db.models import Prompt

__all__ = ["GenerateParams"]


class GenerateParams(BaseModel):
    """What a `generate-articles` run does; the Prefect UI shows these as its form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int | None = Field(
        default=None, ge=1, le=MAX_RUN_LIMIT, description="At most this many prompts; empty: all."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Articles generated together; empty: chosen from the hardware (measured "
        "once per model and machine, then cached). Larger batches use the hardware better "
        "until memory runs out (then batches split by themselves on a GPU).",
    )
    model: str | None = Field(
        default=None, description="Hub id or local directory; empty: ARTICLEGEN_MODEL."
    )
    preset: str | None = Field(
        default=None,
        description="Decoding preset for prompts that name none; empty: nucleus.",
    )
    overrides: DecodingOverrides = Field(
        default_factory=DecodingOverrides,
        description='Decoding settings applied over every prompt\'s own, e.g. {"max_new_tokens": '
        "120}.",
    )
    style: PromptStyle = Field(
        default_factory=PromptStyle,
        description="Prompt format and system message over every prompt's own (and its "
        "preset's, and the settings'); unset fields leave theirs. Checked against the settings "
        "and the model before a run claims anything (`runs.check_params`, `check_model_fits`).",
    )
    template: str | None = Field(
        default=None, description="Article template stem for prompts that name none."
    )
    tags: list[str] = Field(
        default_factory=list, description="Only prompts with at least one of these tags."
    )
    variants: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VARIANTS,
        description="Articles per prompt, instead of each prompt's own `variants`.",
    )
    order: Literal["priority", "fifo"] = Field(
        default="priority", description="priority: highest priority first; fifo: oldest first."
    )
    dry_run: bool = Field(
        default=False, description="Plan and report, but claim and write nothing."
    )
    # The fields below are set by commands (fan-out, `jobs resume`), never by a person filling
    # in Prefect's form: SkipJsonSchema keeps them off it.
    shard: SkipJsonSchema[int] = Field(
        default=0,
        ge=0,
        description="With `shards`: take only the prompts whose id is this "
        "modulo `shards` (the fan-out flow gives each of its runs one shard).",
    )
    shards: SkipJsonSchema[int] = Field(
        default=1,
        ge=1,
        le=MAX_SHARDS,
        description="How many shards the pending prompts are split into; 1: no split.",
    )
    resume_job: SkipJsonSchema[int | None] = Field(
        default=None,
        ge=1,
        description="Finish this crashed, failed or cancelled job: the prompts it had "
        "claimed and not written first, then the queue as it would have gone on (`articlegen "
        "jobs resume`).",
    )

    def variants_of(self, prompt: Prompt) -> list[int]:
        """The variants this run writes for `prompt`: those a review queued again, else all of
        them."""
        if prompt.regenerate:
            return sorted(set(prompt.regenerate))
        return list(range(1, (self.variants or prompt.variants) + 1))

    @model_validator(mode="after")
    def _shard_in_range(self) -> GenerateParams:
        if self.shard >= self.shards:
            raise ValueError(
                f"shard {self.shard} of {self.shards}: shard must be below shards "
                f"(0 to {self.shards - 1})"
            )
        return self

    @field_validator("overrides", mode="before")
    @classmethod
    def _typed_overrides(cls, value: Any) -> Any:
        # Each setting alone here (name, type, range), typed as the decoder reads it ("0.8"
        # becomes 0.8); relations are checked against each prompt's own preset when run.
        if not isinstance(value, Mapping):
            return value  # a DecodingOverrides already, or a wrong type pydantic names
        try:
            return parse_overrides(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
