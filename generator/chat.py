"""Prompt formats: how a prompt's text reaches the model, as is or through a chat template.

A base model (GPT-2) continues text, so it is given the prompt as it is: the `plain` form. An
instruct model (Qwen2.5-Instruct, Llama-3.x-Instruct, SmolLM2-Instruct, Gemma-2-it) was trained
on conversations written in its tokenizer's chat template, so in the `chat` form the prompt
becomes the user's message, after an optional system message, and the template writes the text
the model is given, special tokens included. `auto` picks chat when the tokenizer has a chat
template, else plain.

A prompt's format and system message come in layers, each field from the first layer that sets
it: the prompt's own, its preset's, the settings' (`PromptStyle.over`). The plain form with a
system message is refused, where the layers ask for it (`settle_style`) and where `auto` meets a
tokenizer without a chat template (`used_format`, for that prompt); `frame_prompt` then writes
the text the model is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from articlegen.core.bounds import MAX_PROMPT, PromptFormat
from articlegen.core.describe import describe_validation_error
from articlegen.core.errors import ConfigError, TemplateError
from articlegen.core.safe_text import control_problem

if TYPE_CHECKING:
    from articlegen.core.settings import Settings

__all__ = [
    "SETTING_OF",
    "STYLE_FIELDS",
    "FramedPrompt",
    "PromptStyle",
    "frame_prompt",
    "has_chat_template",
    "parse_style",
    "reply_opening",
    "settle_style",
    "special_tokens",
    "turn_end",
    "used_format",
]

# An example in every message that asks for an instruct model: small, and runs on a CPU.
_INSTRUCT_EXAMPLE = "HuggingFaceTB/SmolLM2-360M-Instruct"


class PromptStyle(BaseModel):
    """How a prompt is framed for the model; a field left unset is the next layer's."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    prompt_format: PromptFormat | None = Field(
        default=None,
        description="`plain`: the prompt as is; `chat`: the prompt as the user's message, "
        "through the tokenizer's chat template; `auto`: chat when the tokenizer has one.",
    )
    system: str | None = Field(
        default=None,
        max_length=MAX_PROMPT,
        description="The system message before the user's (chat form only). Empty: none, "
        'whatever the layers below set (a run\'s `--system ""`).',
    )

    @field_validator("system")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        # Sent to the model and stored: control and bidi characters are refused here as a CSV
        # cell's are at import (a run's --system, a preset's, a setting's), and a NUL cannot be
        # stored in PostgreSQL at all.
        problem = control_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    def over(self, *lower: PromptStyle | None) -> PromptStyle:
        """This layer over `lower` ones, highest first: each field from the first that sets it."""
        layers = [layer for layer in (self, *lower) if layer is not None]
        values = {
            name: next((v for v in (getattr(x, name) for x in layers) if v is not None), None)
            for name in type(self).model_fields
        }
        return PromptStyle.model_validate(values)

    def fields(self) -> dict[str, str]:
        """The fields set, by name."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @classmethod
    def from_settings(cls, settings: Settings) -> PromptStyle:
        """The settings' layer: ARTICLEGEN_PROMPT_FORMAT and ARTICLEGEN_SYSTEM_MESSAGE."""
        return parse_style(
            {"prompt_format": settings.prompt_format, "system": settings.system_message}
        )


STYLE_FIELDS: tuple[str, ...] = tuple(PromptStyle.model_fields)
# The setting (`core.settings`) that is each field's last layer.
SETTING_OF = {"prompt_format": "ARTICLEGEN_PROMPT_FORMAT", "system": "ARTICLEGEN_SYSTEM_MESSAGE"}


def parse_style(values: Mapping[str, Any], clears: bool = False) -> PromptStyle:
    """`values` (a preset's table, a prompt's columns, options) as a style; `ConfigError` names
    each bad field.

    None or blank means unset, as an empty CSV cell or an empty ARTICLEGEN_* variable does;
    where `clears` (a run's options), a `system` given blank on purpose is the empty message,
    which takes the place of every lower layer's: `--system ""` runs without one."""
    given = {k: v for k, v in values.items() if v is not None and str(v).strip()}
    if clears and values.get("system") is not None and "system" not in given:
        given["system"] = ""
    try:
        return PromptStyle.model_validate(given)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe_validation_error(exc, STYLE_FIELDS))) from None


def settle_style(style: PromptStyle) -> PromptStyle:
    """`style` if its fields can go together; `ConfigError` when it asks for the plain form and
    gives a system message.

    That is refused rather than the message dropped: a system message says how to write ("in
    French", "for children"), so an article written without it is not the article asked for,
    and a base model has no system role to put it in. Pasting it before the prompt instead
    would feed a base model an instruction it would only continue.
    """
    if style.prompt_format == "plain" and style.system:
        raise ConfigError(
            "`system` is set but `prompt_format` is `plain`, which has no system message: set "
            "`prompt_format` to `chat` or `auto` (for an instruct model), or drop `system`"
        )
    return style


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer has a chat template (instruct models' tokenizers do)."""
    return bool(getattr(tokenizer, "chat_template", None))


# A private-use mark no template changes or writes itself: where a message goes in its text.
_PROBE = "\ue000message\ue000"


def _rendered(tokenizer: Any, conversation: list[dict[str, str]], opening: bool) -> str:
    """The template's text of `conversation` ("" without a template, or where it refuses:
    it is the model's own code, and any failure means "not known")."""
    if not has_chat_template(tokenizer):
        return ""
    try:
        return str(
            tokenizer.apply_chat_template(
                conversation, add_generation_prompt=opening, tokenize=False
            )
        )
    except Exception:
        return ""


def turn_end(tokenizer: Any) -> str:
    """What the chat template writes after the assistant's message (Llama-3's `<|eot_id|>`,
    Qwen's `<|im_end|>` and a newline): how a reply ends, so a model fine-tuned on replies
    learns to end its turn. Empty for a tokenizer without a template, or one whose template
    hides where the message ends."""
    conversation = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
    _, found, after = _rendered(tokenizer, conversation, opening=False).rpartition(_PROBE)
    return after if found else ""


def reply_opening(tokenizer: Any) -> str:
    """What the chat template writes to open the assistant's reply (`add_generation_prompt`):
    the end of every chat prompt this tokenizer's template made, hence how a chat text is told
    apart from another model's. Empty where it cannot be told."""
    user = [{"role": "user", "content": _PROBE}]
    opened = _rendered(tokenizer, user, opening=True)
    closed = _rendered(tokenizer, user, opening=False)
    return opened[len(closed) :] if closed and opened.startswith(closed) else ""


def used_format(style: PromptStyle, tokenizer: Any, model: str) -> Literal["plain", "chat"]:
    """The form a prompt of `style` takes with this tokenizer: `auto` (or unset) settles to
    chat when the tokenizer has a chat template, else plain.

    `ConfigError`, naming `model`, when `chat` is asked of a tokenizer without a chat template,
    or when the prompt ends in plain form with a system message (see `settle_style`).
    """
    has_template = has_chat_template(tokenizer)
    requested = style.prompt_format or "auto"
    if requested == "chat" and not has_template:
        raise ConfigError(
            f"`prompt_format` is `chat` but model {model} has no chat template (a base model "
            "such as GPT-2 only continues text): set `prompt_format` to `plain` or `auto` (the "
            "prompt's, its preset's or ARTICLEGEN_PROMPT_FORMAT), or use an instruct model, "
            f"e.g. {_INSTRUCT_EXAMPLE}"
        )
    if requested != "plain" and has_template:
        return "chat"
    if requested == "auto" and style.system:
        raise ConfigError(
            f"the prompt has a system message, but model {model} has no chat template, so the "
            "prompt goes in plain form, which has none: use an instruct model, e.g. "
            f"{_INSTRUCT_EXAMPLE}, or drop `system` (the prompt's, its preset's or "
            "ARTICLEGEN_SYSTEM_MESSAGE)"
        )
    settle_style(style)
    return "plain"


@dataclass(frozen=True)
class FramedPrompt:
    """The exact text the model is given, the form it took, and the prompt's own text (the
    user's message in chat form)."""

    text: str
    format: Literal["plain", "chat"]
    user: str

    @property
    def add_special_tokens(self) -> bool:
        """Whether tokenizing the text must add the model's special tokens: not in chat form,
        where the template wrote them already (a second BOS would be a bug)."""
        return self.format == "plain"


def _takes(tokenizer: Any, messages: list[dict[str, Any]]) -> bool:
    """Whether the chat template renders `messages`: the advice to drop a system message holds
    only where the conversation without it renders."""
    try:
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # the template's own failure, whatever it raises (see `frame_prompt`)
        return False
    return True


def frame_prompt(
    tokenizer: Any, model: str, user: str, style: PromptStyle, form: Literal["plain", "chat"]
) -> FramedPrompt:
    """The text given to the model for the prompt text `user` of `style` in `form` (as
    `used_format` chose it): `user` itself in plain form; in chat form, what the chat template
    makes of the system message (if any) and `user` as the user's message.

    Raises `ConfigError` for a system message in plain form, and `TemplateError` naming `model`
    when the chat template refuses the conversation (Gemma's refuses a system role) or a message
    holds the template's own markup.
    """
    if form == "plain":
        settle_style(PromptStyle(prompt_format="plain", system=style.system))
        return FramedPrompt(user, "plain", user)
    _refuse_markup(tokenizer, model, {"system message": style.system or "", "prompt": user})
    messages = [{"role": "system", "content": style.system}] if style.system else []
    messages.append({"role": "user", "content": user})
    try:
        # The generation prompt opens the assistant's turn: the model writes the article as
        # its reply, not as more of the user's message.
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template is the model's own code, run by transformers in a sandbox: any failure
    # there is the template refusing this conversation (Gemma's raises on a system role).
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        hint = (
            ": drop the system message (the prompt's `system`, its preset's or "
            "ARTICLEGEN_SYSTEM_MESSAGE), or put what it says in the prompt itself"
            if style.system and _takes(tokenizer, messages[1:])
            else ""
        )
        raise TemplateError(
            f"the chat template of model {model} refused the prompt ({detail}){hint}"
        ) from None
    return FramedPrompt(str(text), "chat", user)


def _refuse_markup(tokenizer: Any, model: str, texts: Mapping[str, str]) -> None:
    """`TemplateError` when a message holds one of the tokenizer's special tokens as text.

    The chat text is tokenized as a whole, so `<|eot_id|><|start_header_id|>system` inside a
    topic or a client field would end the user's turn and open a system turn of its own: a
    prompt could give the model instructions its system message never gave.
    """
    special = special_tokens(tokenizer)
    for where, text in texts.items():
        found = min(((text.find(t), t) for t in special if t in text), default=None)
        if found is not None:
            raise TemplateError(
                f"the {where} holds {found[1]!r}, a special token of model {model}'s chat "
                "template: in chat form it would change the conversation's turns; remove it "
                "from the prompt's text or fields"
            )


def special_tokens(tokenizer: Any) -> list[str]:
    """The text of every special token of the tokenizer (its own and those added as special):
    what the tokenizer reads as markup wherever it meets it in a text."""
    special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return special + [str(t) for t in added.values() if getattr(t, "special", False)]
