"""Bounds that more than one layer checks, each defined once.

The decoding configuration, the run parameters, the CSV columns, the database's column widths
and the CLI's options all read them from here, so a `--max-new-tokens` the CLI accepts is one
the decoder accepts, and a topic the import accepts fits its column.
"""

from __future__ import annotations

from typing import Literal, get_args

from articlegen.core.errors import NotFoundError

__all__ = [
    "MAX_ARTICLE_TEXT",
    "MAX_BATCH_SIZE",
    "MAX_CORPUS_FILE_BYTES",
    "MAX_EXTERNAL_ID",
    "MAX_ID",
    "MAX_IMPORT_FILE_BYTES",
    "MAX_NAME",
    "MAX_NEW_TOKENS",
    "MAX_NOTE",
    "MAX_PROMPT",
    "MAX_RUN_LIMIT",
    "MAX_SEARCH",
    "MAX_SEED",
    "MAX_SETTINGS_FILE_BYTES",
    "MAX_SHARDS",
    "MAX_TAGS",
    "MAX_TOKEN_ID",
    "MAX_TOPIC",
    "MAX_VARIANTS",
    "PRIORITY_RANGE",
    "PROMPT_FORMATS",
    "SEED_BITS",
    "PromptFormat",
    "check_id",
]

# Row ids: the `integer` columns of both backends stop here; a larger id names nothing.
MAX_ID = 2**31 - 1


def check_id(value: int, what: str, listing: str) -> int:
    """`value` if a row can have it as its id, else `NotFoundError` naming `what` (a table's
    row: "job", "article") and the command that `listing` them.

    Checked before any query: PostgreSQL refuses a number past its `integer` range with an
    error of its own, and SQLite compares it without complaint and finds nothing.
    """
    if not 1 <= value <= MAX_ID:
        raise NotFoundError(
            f"no {what} {value}: {what} ids run from 1 to {MAX_ID}; `{listing}` shows the "
            f"{what}s there are"
        )
    return value


# Generation.
MAX_NEW_TOKENS = 8192  # tokens per article: past every context length we load today
MAX_BATCH_SIZE = 512  # rows per batch: where an H200 stopped gaining (bench/README.md)
# Token ids: past the largest vocabulary we know of (Gemma's 262k); the model checks its own.
MAX_TOKEN_ID = 2**24
SEED_BITS = 63  # seeds fit a signed 64-bit integer column on every backend
MAX_SEED = 2**SEED_BITS - 1

# Runs.
MAX_RUN_LIMIT = 1_000_000  # prompts one run may claim
MAX_SHARDS = 1024
MAX_VARIANTS = 100  # articles per prompt

# Prompts, as imported and as stored (the database's column widths follow these).
MAX_TOPIC = 500
MAX_PROMPT = 20_000
MAX_EXTERNAL_ID = 200
MAX_NAME = 100  # preset and template names
MAX_TAGS = 50
PRIORITY_RANGE = (-1_000_000, 1_000_000)
# How a prompt's text reaches the model: as is (`plain`), through the tokenizer's chat template
# (`chat`), or chat when the tokenizer has a template and plain when not (`auto`). Settings,
# presets, the CSV import and the run all accept exactly these.
PromptFormat = Literal["plain", "chat", "auto"]
PROMPT_FORMATS: tuple[str, ...] = get_args(PromptFormat)

# Review.
MAX_NOTE = 2_000  # a reviewer's note or reason
MAX_SEARCH = 200  # a search of the review queue
MAX_ARTICLE_TEXT = 200_000  # an editor's text of one article

# Files read whole into memory. Past these, a file is more likely a mistake (a disk image, a log
# that never ends) than data: a prompts CSV of 256 MiB holds about a million prompts of the
# largest kind a client sends, and a settings, presets or template file is a few hundred lines.
MAX_IMPORT_FILE_BYTES = 256 << 20
# A training corpus file (or a tokenizer's, for `models init`): larger ones are split.
MAX_CORPUS_FILE_BYTES = 1 << 30
MAX_SETTINGS_FILE_BYTES = 1 << 20
