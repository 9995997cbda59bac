"""Turning pydantic's validation errors into sentences a user can act on.

Every place where input enters (a CSV row, `--set`, a flow parameter, a presets file) phrases its
errors the same way: "`field`: what is wrong, got VALUE", with the closest known name for a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from articlegen.core.files import MESSAGE_QUOTE_CHARS, quoted

__all__ = ["closest", "describe_error", "describe_validation_error"]


def closest(name: str, known: Sequence[str], cutoff: float = 0.6) -> str:
    """ " (did you mean `x`?)" for the known name closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return f" (did you mean `{close[0]}`?)" if close else ""


def describe_error(err: ErrorDetails, known: Sequence[str] = ()) -> str:
    """Phrase one pydantic error as "`field`: what is wrong, got VALUE".

    `known` lists the valid field names, so an unknown one comes with the closest of them.
    """
    field = ".".join(str(part) for part in err["loc"])
    # pydantic prefixes custom messages with "Value error, "; the rest already reads well.
    message = err["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if err["type"] == "extra_forbidden":
        return f"`{field}`: unknown setting{closest(field, known)}"
    value = err["input"]
    # Never a megabyte of it, whether one long string or a list of a million items.
    shown = quoted(value) if isinstance(value, str) else _short(repr(value))
    return f"`{field}`: {message}, got {shown}" if field else message


# How many of one value's problems a message lists: a list of 200,000 bad items is one mistake.
MOST_PROBLEMS = 5


def _short(text: str) -> str:
    """A repr cut as `quoted` cuts a string, to the same length."""
    if len(text) <= MESSAGE_QUOTE_CHARS:
        return text
    return f"{text[:MESSAGE_QUOTE_CHARS]}… ({len(text):,} characters)"


def describe_validation_error(exc: ValidationError, known: Sequence[str] = ()) -> list[str]:
    """`describe_error` for each error of `exc`, the first `MOST_PROBLEMS` of them and a count
    of the rest."""
    errors = exc.errors()
    described = [describe_error(err, known) for err in errors[:MOST_PROBLEMS]]
    if len(errors) > MOST_PROBLEMS:
        described.append(f"and {len(errors) - MOST_PROBLEMS:,} more problems of the same kind")
    return described
