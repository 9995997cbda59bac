"""The training corpus: documents from files and approved articles, deduplicated, split into
training and evaluation by document, and identified by a hash.

Files: `.txt` (documents separated by lines holding only `<|endoftext|>`, as gpt-2-simple
writes them; a file without such lines is split at blank lines, its only other boundary),
`.csv` (a `text` column), `.jsonl` (an object with a `text` string on each line).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from articlegen.core.bounds import MAX_CORPUS_FILE_BYTES
from articlegen.core.errors import InputError
from articlegen.core.files import check_input_file, read_input
from articlegen.db.articles import ApprovedText

__all__ = [
    "MAX_CORPUS_FILE_BYTES",
    "Corpus",
    "Document",
    "build_corpus",
    "check_files",
    "from_articles",
    "read_files",
]

_TOO_LARGE = "split it into several files and give each with --corpus"
_SEPARATOR = re.compile(r"^[ \t]*<\|endoftext\|>[ \t]*$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Document:
    """One document and where it came from: a file, or an approved article."""

    text: str
    file: str | None = None
    article_id: int | None = None
    # A chat conversation (an approved article in chat form): where its reply starts. The
    # conversation's markup is the template's of the model that wrote it.
    reply_at: int | None = None


@dataclass(frozen=True)
class Corpus:
    """Unique documents, split by document; `hash` identifies the set, whatever its order."""

    train: list[str]
    eval: list[str]
    hash: str
    summary: dict[str, Any] = field(default_factory=dict)
    # The documents that are chat conversations, and where each one's reply starts: their
    # template wrote their special tokens, and their turn must end as the template ends it
    # (`training.blocks`).
    chat: Mapping[str, int] = field(default_factory=dict)


def check_files(paths: Sequence[Path]) -> None:
    """`InputError` for the first path that cannot be a corpus file (kind, existence, size):
    what can be told without reading, told before a run starts."""
    for path in paths:
        _check(path)


def read_files(paths: Sequence[Path]) -> list[Document]:
    """The documents of every file, in order."""
    documents: list[Document] = []
    for path in paths:
        documents.extend(_READERS[path.suffix.lower()](path, _read_text(path)))
    return documents


def from_articles(articles: Iterable[ApprovedText]) -> list[Document]:
    """Approved articles as documents: the text the model was given, then the approved text
    (in chat form, the conversation up to the assistant's turn, then the turn's text)."""
    return [
        Document(
            a.prompt_text + a.body,
            article_id=a.article_id,
            reply_at=len(a.prompt_text) if a.prompt_format == "chat" else None,
        )
        for a in articles
        if a.body.strip()
    ]


def build_corpus(documents: Sequence[Document], eval_fraction: float) -> Corpus:
    """Deduplicate (whitespace aside), then hold out `eval_fraction` of the documents.

    The split is by document and by content: documents are ordered by their hash and the
    first ones held out, so a document is on the same side in every run, whatever the order of
    the files, and never on both. `InputError` unless both sides get at least one.
    """
    documents = [d for d in documents if d.text.strip()]
    unique: dict[str, str] = {}
    chat: dict[str, int] = {}
    for document in documents:
        text = document.text.strip()
        kept = unique.setdefault(_digest(" ".join(text.split())), text)
        if document.reply_at is not None and kept == text:
            stripped = len(document.text) - len(document.text.lstrip())
            chat[kept] = document.reply_at - stripped
    if len(unique) < 2:
        raise InputError(
            f"the corpus has {len(unique)} distinct document{'' if len(unique) == 1 else 's'} "
            f"(of {len(documents)} read): training needs at least 2, one to learn from and one "
            "held out to measure it; add documents (a .txt file separates them with lines "
            "holding only <|endoftext|>, or blank lines; a .csv has one in each row of its "
            "`text` column; a .jsonl one on each line)"
        )
    ordered = sorted(unique)
    held_out = min(len(ordered) - 1, max(1, round(len(ordered) * eval_fraction)))
    articles = [d.article_id for d in documents if d.article_id is not None]
    summary = {
        "documents_read": len(documents),
        "duplicates_dropped": len(documents) - len(unique),
        "train_documents": len(ordered) - held_out,
        "eval_documents": held_out,
        "characters": sum(len(t) for t in unique.values()),
        "files": sorted({d.file for d in documents if d.file is not None}),
        "articles": len(articles),
        "article_ids": _ranges(articles),
        # Written in chat form; those another model's template wrote train as plain text.
        "chat_form_articles": len(chat),
    }
    return Corpus(
        train=[unique[k] for k in ordered[held_out:]],
        eval=[unique[k] for k in ordered[:held_out]],
        # Chat documents are tokenized apart (`training.blocks`): the same texts read as chat
        # are other training data, and a resumed run must see the very same.
        hash=_digest("\n".join(ordered) + "".join(f"\nchat {_digest(t)}" for t in sorted(chat))),
        summary=summary,
        chat=chat,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ranges(ids: Sequence[int]) -> str:
    """`1-3, 7` for [1, 2, 3, 7]: which articles, short enough to store."""
    parts: list[str] = []
    for number in sorted(set(ids)):
        if parts and parts[-1].split("-")[-1] == str(number - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{number}"
        else:
            parts.append(str(number))
    return ", ".join(parts)


def _check(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise InputError(
            f"{path}: a corpus file is .txt, .csv (a `text` column) or .jsonl (a `text` "
            f"field on each line), not {suffix or 'a file without an extension'}"
        )
    check_input_file(path, f"corpus file {path}", MAX_CORPUS_FILE_BYTES, _TOO_LARGE)


def _read_text(path: Path) -> str:
    _check(path)
    data = read_input(path, f"corpus file {path}", MAX_CORPUS_FILE_BYTES, _TOO_LARGE)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            f"corpus file {path} is UTF-16 (it starts with a UTF-16 byte-order mark): re-save "
            "it as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"corpus file {path}, line {line}: byte 0x{data[exc.start]:02X} is not UTF-8; "
            "re-save the file as UTF-8"
        ) from None


def _txt(path: Path, text: str) -> list[Document]:
    text = text.replace("\r\n", "\n")
    splitter = _SEPARATOR if _SEPARATOR.search(text) else _BLANK_LINES
    return [Document(part, str(path)) for part in splitter.split(text)]


def _csv(path: Path, text: str) -> list[Document]:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"corpus file {path} is not a readable CSV: {exc}") from None
    if "text" not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise InputError(
            f"corpus file {path} has no `text` column (its columns: {found}): name the column "
            "holding the documents `text`"
        )
    return [Document(str(v), str(path)) for v in frame["text"]]


def _jsonl(path: Path, text: str) -> list[Document]:
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"corpus file {path}, line {number}: not JSON ({exc.msg})") from None
        except (ValueError, RecursionError):
            # Valid JSON that Python will not hold: a number of thousands of digits, or
            # nesting deeper than the interpreter's stack.
            raise InputError(
                f"corpus file {path}, line {number}: not JSON that can be read (a number too "
                "long or nesting too deep)"
            ) from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise InputError(
                f'corpus file {path}, line {number}: each line must be an object with a "text" '
                'string, e.g. {"text": "An article..."}'
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            # A lone surrogate, which JSON's \u escapes can spell and UTF-8 cannot.
            raise InputError(
                f'corpus file {path}, line {number}: the "text" holds {value[exc.start]!r}, '
                "half of a UTF-16 pair, which is not a character; fix the escape"
            ) from None
        documents.append(Document(value, str(path)))
    return documents


_READERS = {".txt": _txt, ".csv": _csv, ".jsonl": _jsonl}
