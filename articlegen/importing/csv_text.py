"""A CSV file's text as records: the file checked and decoded, its delimiter settled, its
records read as strings, and the line each record starts on (as an editor counts lines, quoted
newlines included).

Only commas separate cells, unless the file says otherwise on an Excel-style first line
(`sep=;`, which Excel writes and reads): then that delimiter is used and the line is skipped. A
file whose header has no comma but semicolons, tabs or pipes (a spreadsheet saved in a locale
whose list separator is `;`) is refused by name, since read with commas it would be one column.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pandas.errors import EmptyDataError, ParserError

from articlegen.core.bounds import MAX_IMPORT_FILE_BYTES
from articlegen.core.errors import InputError
from articlegen.core.files import read_input

__all__ = ["CsvRecords", "read_records"]

# The delimiters a header may be written with, by the name a message gives them.
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SEP_LINE = re.compile(r"sep=(.)[ \t]*(?:\r?\n|$)", re.IGNORECASE)
_REENCODE = "re-save it as UTF-8 (in Excel: Save As > 'CSV UTF-8')"


@dataclass(frozen=True)
class CsvRecords:
    """The records of a CSV (the header first), each with the line it starts on."""

    records: list[list[str]]
    lines: list[int]
    delimiter: str = ","


def read_records(path: Path) -> CsvRecords:
    """Read, decode and split a CSV file; `InputError` when it can't be read as one."""
    data = read_input(
        path,
        str(path),
        MAX_IMPORT_FILE_BYTES,
        "split it into several files and import each (re-importing is idempotent)",
    )
    text = _decode(path, data)
    # Blank lines before the header: pandas would take the first for the header, or call the
    # file empty. Drop them, and count them back into every line number.
    leading = re.match(r"(?:[ \t]*\r?\n)*", text)
    offset = leading.group().count("\n") if leading else 0
    text = text[leading.end() if leading else 0 :]
    delimiter = ","
    if sep := _SEP_LINE.match(text):
        delimiter = sep.group(1)
        if delimiter not in _DELIMITERS:
            raise InputError(
                f"{path}, line {offset + 1}: `sep=` names {delimiter!r}, but cells may be "
                "separated by a comma, a semicolon, a tab or a pipe: save the file as "
                "comma-separated"
            )
        offset += 1
        text = text[sep.end() :]
        if not text.strip():
            raise InputError(_empty_message(path))
    else:
        _refuse_other_delimiter(path, text, offset)
    records, lines = _parse(path, text, offset, delimiter)
    return CsvRecords(records=records, lines=lines, delimiter=delimiter)


def _refuse_other_delimiter(path: Path, text: str, offset: int) -> None:
    """A header without a comma but with another delimiter: the file was saved with it.

    The header alone decides, not `csv.Sniffer`: a sniffer weighs the data rows too, and a comma
    file whose topics hold semicolons ("rail; sea; air") would read as semicolon-separated. A
    header names columns, which hold no delimiter of any kind.
    """
    header = text.split("\n", 1)[0]
    if "," in header:
        return  # a comma CSV, whatever its cells hold
    counts = {d: header.count(d) for d in _DELIMITERS if d != ","}
    delimiter = max(counts, key=lambda d: counts[d])
    if counts[delimiter] == 0:
        return  # one column
    name = _DELIMITERS[delimiter]
    shown = header.strip()
    shown = shown if len(shown) <= 60 else shown[:60] + "…"
    sep = "sep=\\t" if delimiter == "\t" else f"sep={delimiter}"  # a tab, as a user types it
    raise InputError(
        f"{path}, line {offset + 1} (header): looks {name}-separated ({shown!r}), but cells "
        "are separated by commas: save it as comma-separated (in Excel: Save As > 'CSV "
        f"UTF-8 (Comma delimited)'), or make `{sep}` its first line"
    )


def _empty_message(path: Path) -> str:
    return (
        f"{path} is empty: a prompts CSV starts with a header line naming its columns, at least "
        "`topic`"
    )


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path} is UTF-16, not UTF-8: {_REENCODE}")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(
            f"{path}, line {line}: contains a NUL byte, so it is not a UTF-8 text file (binary, "
            f"or saved in a 16-bit encoding): {_REENCODE}, or remove the NUL bytes"
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's habit) is fine
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path} is not UTF-8: byte 0x{data[exc.start]:02X} on line {line} is not valid "
            f"UTF-8 (the file is probably Latin-1 or Windows-1252): {_REENCODE}, or convert it "
            f"with `iconv -f cp1252 -t utf-8 {path.name} > fixed.csv`"
        ) from None
    if not text.strip():
        raise InputError(_empty_message(path))
    return text


def _read_frame(text: str, delimiter: str, nrows: int | None = None) -> list[list[str]]:
    # Everything as text (types are pydantic's job), empty cells as "", blank lines kept so
    # that line numbers can be counted.
    frame = pd.read_csv(
        io.StringIO(text),
        sep=delimiter,
        header=None,
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=False,
        nrows=nrows,
    )
    return [[str(v) for v in row] for row in frame.fillna("").to_numpy().tolist()]


def _start_lines(records: Sequence[Sequence[str]]) -> Iterator[int]:
    # Record i starts after every earlier record's line break and quoted newlines.
    line = 1
    for values in records:
        yield line
        line += 1 + sum(cell.count("\n") for cell in values)


def _line_of_record(text: str, delimiter: str, index: int) -> int:
    before = _read_frame(text, delimiter, nrows=index) if index else []
    return list(_start_lines([*before, []]))[-1]


def _parse(path: Path, text: str, offset: int, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """Records and the line each starts on, `offset` lines having been cut off the top."""
    try:
        records = _read_frame(text, delimiter)
    except EmptyDataError:
        raise InputError(_empty_message(path)) from None
    except ParserError as exc:
        raise InputError(_parser_message(path, text, str(exc), offset, delimiter)) from None
    return records, [offset + line for line in _start_lines(records)]


def _parser_message(path: Path, text: str, message: str, offset: int, delimiter: str) -> str:
    # pandas numbers records, not lines; turn its record index into the line a user sees.
    if m := re.search(r"EOF inside string starting at row (\d+)", message):
        line = offset + _line_of_record(text, delimiter, int(m.group(1)))
        return (
            f"{path}, line {line}: a quoted cell opens here and never closes (unbalanced "
            '"): add the closing quote, and double any quote inside a cell ("")'
        )
    if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message):
        line = offset + _line_of_record(text, delimiter, int(m.group(2)) - 1)
        name = _DELIMITERS[delimiter]
        return (
            f"{path}, line {line}: {m.group(3)} cells but the header has {m.group(1)}: quote "
            f'cells that contain {name}s ("a{delimiter} b"), or add the missing column to the '
            "header"
        )
    return f"{path} is not a readable CSV file: {message}"
