"""Rendering rows for people and programs: `--format table|csv|json`, shared by every command."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import pandas as pd

__all__ = ["FORMATS", "render", "show"]

FORMATS = ("table", "csv", "json")
# A table cell longer than this is cut with "…" so rows stay one line on a terminal.
_TABLE_CELL_WIDTH = 48


def _plain(value: Any) -> Any:
    """A JSON-ready value: enums by value, times in ISO 8601 UTC."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value


def _flat(value: Any) -> Any:
    # Lists and mappings as JSON text, so a CSV or table cell holds them whole.
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


def render(
    records: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    table_columns: Sequence[str] | None = None,
    empty: str = "(nothing to show)",
) -> str:
    """Render `records` as an aligned table, CSV, or a JSON array.

    `table_columns` narrows the table to the columns that fit a terminal; CSV and JSON keep all.
    """
    rows = [{k: _plain(v) for k, v in r.items()} for r in records]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return pd.DataFrame([{k: _flat(v) for k, v in r.items()} for r in rows]).to_csv(index=False)
    if not rows:
        return empty
    columns = list(table_columns or rows[0])
    frame = pd.DataFrame([{c: _flat(r.get(c)) for c in columns} for r in rows], columns=columns)
    formatters = {}
    for column in columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            # Text reads best left-aligned; pandas right-aligns, so pad each cell ourselves.
            cells = frame[column].map(_cut)
            frame[column] = cells
            width = max(len(column), *(len(c) for c in cells))
            formatters[column] = functools.partial(_ljust, width=width)
    table = frame.to_string(index=False, justify="left", formatters=formatters)
    return "\n".join(line.rstrip() for line in table.splitlines())


def _ljust(value: object, width: int) -> str:
    return str(value).ljust(width)


def _cut(value: object) -> str:
    text = " ".join(str(value).split())  # newlines inside a cell would break the table
    return text if len(text) <= _TABLE_CELL_WIDTH else text[: _TABLE_CELL_WIDTH - 1] + "…"


def show(record: Mapping[str, Any], fmt: str) -> str:
    """One record: a field/value table, or one CSV row, or one JSON object."""
    if fmt == "table":
        return render([{"field": k, "value": v} for k, v in record.items()], "table")
    text = render([record], fmt)
    return text.strip()[1:-1].strip() if fmt == "json" else text
