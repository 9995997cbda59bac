"""Option bundles that several commands share, declared once: output format, decoding
settings (`--set`), the model and preset, the options of a generation run, and row ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from articlegen.cli.output import FORMATS
from articlegen.core.bounds import (
    MAX_BATCH_SIZE,
    MAX_NEW_TOKENS,
    MAX_RUN_LIMIT,
    MAX_VARIANTS,
    PROMPT_FORMATS,
    check_id,
)
from articlegen.core.errors import ConfigError, InputError
from articlegen.generator.decoding import DecodingOverrides, parse_overrides, split_assignments

__all__ = [
    "ARTICLE_ID",
    "JOB_ID",
    "PROMPT_ID",
    "RowId",
    "format_option",
    "model_option",
    "preset_option",
    "run_options",
    "set_option",
    "typed_overrides",
]

F = TypeVar("F", bound=Callable[..., Any])


class RowId(click.ParamType[int]):
    """A row's id, as every command that takes one reads it.

    Text that is not a whole number is a usage error (exit 2); a number no row can have (zero,
    negative, past the database's integer range) names nothing, like an id that is not
    there: `NotFoundError`, shown as `Error: ...` with exit 1, before any query is made.
    """

    name = "id"

    def __init__(self, what: str, listing: str) -> None:
        self.what = what
        self.listing = listing

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """`value` as an id; see the class."""
        if isinstance(value, int):
            return check_id(value, self.what, self.listing)
        text = str(value).strip()
        # int() would also read "٣" or "1_000"; an id is ASCII digits with an optional sign.
        if not (text.isascii() and text.lstrip("+-").isdigit()):
            self.fail(f"{value!r} is not a {self.what} id (a whole number)", param, ctx)
        return check_id(int(text), self.what, self.listing)


JOB_ID = RowId("job", "articlegen jobs list")
ARTICLE_ID = RowId("article", "articlegen articles list")
PROMPT_ID = RowId("prompt", "articlegen prompts list")


def _split_pairs(
    ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]
) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        try:
            if not pair.strip():
                raise InputError("empty")
            overrides.update(split_assignments([pair]))
        except InputError:
            raise click.UsageError(
                f"--set takes NAME=VALUE, e.g. --set temperature=0.8; got {pair!r}", ctx
            ) from None
    return overrides


def set_option(help: str) -> Callable[[F], F]:
    """`--set NAME=VALUE`, repeatable; the command receives `overrides`, a dict of text values
    (malformed pairs are usage errors), and types them itself (`typed_overrides`)."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="NAME=VALUE",
        callback=_split_pairs,
        help=help,
    )


def typed_overrides(pairs: dict[str, str], max_new_tokens: int | None = None) -> DecodingOverrides:
    """`--set` values (and `--max-new-tokens`) as typed overrides; `ConfigError` names the
    option and each bad setting."""
    values: dict[str, Any] = dict(pairs)
    if max_new_tokens is not None:
        values["max_new_tokens"] = max_new_tokens
    try:
        return parse_overrides(values, where="--set: ")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; see `articlegen presets list` for the settings") from None


def format_option(func: F) -> F:
    """The `--format` option every list and show command shares."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format: an aligned table, CSV, or JSON (an array of objects).",
    )(func)


def model_option(func: F) -> F:
    """`--model`: a registry name, a Hub id or a local directory, instead of ARTICLEGEN_MODEL."""
    return click.option(
        "--model",
        help="Registry name, Hub id or local directory  [default: ARTICLEGEN_MODEL]",
    )(func)


def preset_option(help: str) -> Callable[[F], F]:
    """`--preset NAME`: a decoding preset (`articlegen presets list`)."""
    return click.option("--preset", help=help)


_RUN_OPTIONS: list[Callable[[F], F]] = [
    click.option(
        "--limit", type=click.IntRange(1, MAX_RUN_LIMIT), help="At most this many prompts."
    ),
    model_option,
    preset_option("Preset for prompts that name none  [default: nucleus]"),
    click.option(
        "--batch-size",
        type=click.IntRange(1, MAX_BATCH_SIZE),
        help="Articles generated together  [default: chosen from the hardware, measured once "
        "per model and machine]",
    ),
    click.option(
        "--max-new-tokens",
        type=click.IntRange(1, MAX_NEW_TOKENS),
        help="Token limit for every article (overrides prompts and presets).",
    ),
    click.option("--template", help="Article template stem for prompts that name none."),
    click.option(
        "--variants",
        type=click.IntRange(1, MAX_VARIANTS),
        help="Articles per prompt, instead of each prompt's own count.",
    ),
    set_option("Override a decoding setting for every article; repeatable."),
    click.option(
        "--prompt-format",
        type=click.Choice(PROMPT_FORMATS),
        help="Frame every prompt plain, in chat form (the model's chat template) or auto "
        "(chat when it has one), over each prompt's own.",
    ),
    click.option(
        "--system",
        help="System message for every prompt in chat form, over each prompt's own; "
        '--system "" for none.',
    ),
    click.option("--tag", "tags", multiple=True, help="Only prompts with this tag; repeatable."),
    click.option(
        "--order",
        type=click.Choice(["priority", "fifo"]),
        default="priority",
        show_default=True,
        help="Highest priority first, or oldest first.",
    ),
]


def run_options(command: F) -> F:
    """The options of a generation run, shared by `generate` and `fan-out`."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command
