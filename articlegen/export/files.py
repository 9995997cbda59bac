"""Exporting articles: CSV, JSON Lines, or a folder of Markdown or HTML files with an index.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab, a carriage
return or a newline) are prefixed with an apostrophe, as OWASP advises: an article or a prompt
could carry `=HYPERLINK(...)`, and the client opens exports in Excel.

Every string exported loses bidirectional overrides and control characters
(`core.safe_text.strip_controls`): model output can hold them. Exported again into a folder, a
Markdown or HTML export replaces what articlegen wrote there before (`export.manifest`).

An article written by random weights carries its warning in every format: the `model_kind`
column of CSV, the record of JSON Lines, a first line of its Markdown file and a note at the top
of its HTML page, and a mark in both indexes.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from articlegen.core.errors import InputError
from articlegen.core.safe_text import clean_exported, strip_controls
from articlegen.export.manifest import Manifest, digest
from articlegen.generator.templates import Templates

__all__ = ["EXPORT_FORMATS", "Exported", "export_articles", "neutralise_formula"]

EXPORT_FORMATS = ("csv", "jsonl", "md", "html")
ExportFormat = Literal["csv", "jsonl", "md", "html"]
CSV_COLUMNS = [
    "id", "external_id", "topic", "title", "body", "edited", "edited_by", "review_status",
    "reviewer_note", "reviewed_by", "words", "perplexity", "flags", "model", "model_revision",
    "model_kind", "preset", "seed", "job_id", "variant", "version", "created_at",
]  # fmt: skip
# A newline too: exported text has its carriage returns turned into newlines.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
# Inline: an exported page travels alone, without the workspace's stylesheet.
_HTML_NOTE_STYLE = (
    "background:#fde8e8;color:#9b1c1c;border:2px solid #9b1c1c;border-radius:4px;"
    "padding:.6rem 1rem;font:600 16px/1.4 system-ui,sans-serif"
)


@dataclass(frozen=True)
class Exported:
    """What an export did: the files it wrote, and those of an earlier export into the same
    folder that it removed (articles no longer exported)."""

    written: list[Path]
    removed: list[Path] = field(default_factory=list)


def neutralise_formula(value: Any) -> Any:
    """`value`, with a leading apostrophe if a spreadsheet would evaluate it."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60] or "article"


def export_articles(
    records: Sequence[dict[str, Any]], fmt: ExportFormat, out: Path, templates: Templates
) -> Exported:
    """Write `records` (from `articlegen.records.article_record`).

    csv and jsonl write the file `out`; md and html write one file per article and an index
    into the folder `out`, and remove what an earlier export of that format wrote there and
    this one does not. `InputError` if `out` cannot be written, or holds a manifest that is not
    articlegen's.
    """
    try:
        if fmt in ("csv", "jsonl"):
            out.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "csv":
                rows = [
                    {c: neutralise_formula(clean_exported(_cell(r.get(c)))) for c in CSV_COLUMNS}
                    for r in records
                ]
                pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(out, index=False)
            else:
                with out.open("w", encoding="utf-8") as handle:
                    for record in records:
                        line = json.dumps(clean_exported(record), default=str, ensure_ascii=False)
                        handle.write(line + "\n")
            return Exported([out])
        out.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.read(out)  # refused before anything is written
        key = "markdown" if fmt == "md" else "html"
        names = [f"{record['id']:05d}-{_slug(record['title'])}.{fmt}" for record in records]
        manifest.check_writable(fmt, [*names, f"index.{fmt}"])  # before anything is written
        files: dict[str, str] = {}
        entries = []
        for record, name in zip(records, names, strict=True):
            text = _with_warning(record[key] or "", fmt, record.get("warning"))
            files[name] = _write(out / name, text)
            entries.append({**record, "file": name})
        index = templates.render(f"index.{fmt}.j2", {"articles": entries}).text
        files[f"index.{fmt}"] = _write(out / f"index.{fmt}", index)
        removed = manifest.remove_stale(fmt, files)
        manifest.write()
        return Exported([out / name for name in files], removed)
    except OSError as exc:
        raise InputError(f"cannot write the export to {out}: {exc.strerror}") from exc


def _write(path: Path, text: str) -> str:
    """Write `text`, without control characters, to `path`; return the file's digest."""
    path.write_text(strip_controls(text), encoding="utf-8")
    return digest(path)


def _with_warning(text: str, fmt: str, warning: str | None) -> str:
    """An exported article's text, with `warning` (if any) where a reader meets it first: a
    first line of Markdown, a note opening the HTML page's body."""
    if not warning:
        return text
    if fmt == "md":
        return f"> **WARNING: {warning}.**\n\n{text}"
    note = f'<p role="note" style="{_HTML_NOTE_STYLE}">WARNING: {html.escape(warning)}.</p>'
    body = _BODY_TAG.search(text)
    if body is None:  # a template that renders a fragment
        return f"{note}\n{text}"
    return f"{text[: body.end()]}\n{note}{text[body.end() :]}"


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value.value if hasattr(value, "value") else value
