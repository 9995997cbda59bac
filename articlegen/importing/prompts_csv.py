"""CSV import: a client's prompts file becomes validated `PromptSpec`s, then database rows.

Reading is strict and explains itself: every problem names the file, the line (as an editor
counts lines, quoted newlines included), the column and the fix. Writing is all-or-nothing by
default; `skip_invalid` writes the valid rows and hands back the rejects.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandas.errors import EmptyDataError, ParserError
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import IntegrityError

from articlegen.core.describe import describe_error, describe_validation_error
from articlegen.core.errors import ConfigError, DatabaseError, ImportRejected, InputError
from articlegen.db import Database, driver_message
from articlegen.db.prompts import UpsertPlan, apply_upsert, plan_upsert
from articlegen.generator.chat import PromptStyle
from articlegen.generator.decoding import DECODING_FIELDS, DecodingOverrides, settle
from articlegen.generator.presets import PresetCatalog
from articlegen.importing.specs import BASE_COLUMNS, EXTRA_PREFIX, PromptSpec

__all__ = ["ImportReport", "ParsedCsv", "RejectedRow", "import_prompts_csv", "read_prompts_csv"]

KNOWN_COLUMNS = (*BASE_COLUMNS, *DECODING_FIELDS)
# How many row problems an all-or-nothing error lists before pointing at --rejects.
_MAX_LISTED_PROBLEMS = 100


@dataclass(frozen=True)
class RejectedRow:
    """A data row that failed validation, with its original cells and every reason."""

    line: int
    cells: dict[str, str]
    reasons: list[str]


@dataclass
class ParsedCsv:
    """A prompts CSV read and validated, not yet written."""

    path: Path
    columns: list[str]
    valid: list[tuple[int, PromptSpec]] = field(default_factory=list)
    rejects: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per rejected row: "line N: reason; reason"."""
        return [f"line {r.line}: {'; '.join(r.reasons)}" for r in self.rejects]

    def write_rejects(self, out: Path) -> None:
        """Write the rejected rows as CSV: their line, the reason, then the original cells."""
        records = [
            {"line": r.line, "reason": "; ".join(r.reasons), **r.cells} for r in self.rejects
        ]
        frame = pd.DataFrame.from_records(records, columns=["line", "reason", *self.columns])
        try:
            frame.to_csv(out, index=False, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write rejects to {out}: {exc.strerror}") from exc


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, on a dry run, would do)."""

    path: Path
    inserted: int
    updated: int
    unchanged: int
    kept_processed: int
    rejected: int
    dry_run: bool
    warnings: list[str]
    rejects_path: Path | None


def read_prompts_csv(path: Path, catalog: PresetCatalog) -> ParsedCsv:
    """Read and validate a prompts CSV; `InputError` when the file as a whole can't be used."""
    text = _decode(path, _read_bytes(path))
    # Blank lines before the header: pandas would take the first for the header, or call the
    # file empty. Drop them, and count them back into every line number.
    leading = re.match(r"(?:[ \t]*\r?\n)*", text)
    skipped = leading.group().count("\n") if leading else 0
    records, lines = _parse(path, text[leading.end() if leading else 0 :], skipped)
    columns = _check_header(path, records[0], lines[0])
    parsed = ParsedCsv(path=path, columns=columns)
    seen_ids: dict[str, int] = {}
    seen_keys: dict[str, int] = {}
    for line, values in zip(lines[1:], records[1:], strict=True):
        cells = dict(zip(columns, values, strict=False))
        if not any(v.strip() for v in cells.values()):
            continue  # a blank line
        spec, reasons, row_warnings = _validate_row(cells, catalog)
        if spec is not None:
            reasons += _duplicate_reasons(spec, line, seen_ids, seen_keys)
        parsed.warnings += [f"line {line}: {w}" for w in row_warnings]
        if reasons or spec is None:
            parsed.rejects.append(RejectedRow(line=line, cells=cells, reasons=reasons))
        else:
            parsed.valid.append((line, spec))
    if not parsed.valid and not parsed.rejects:
        raise InputError(
            f"{path} has a header but no prompt rows: add one row per topic below the header"
        )
    return parsed


def import_prompts_csv(
    database: Database,
    path: Path,
    catalog: PresetCatalog,
    *,
    dry_run: bool = False,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
) -> ImportReport:
    """Import a prompts CSV: all rows or none, or with `skip_invalid` the valid ones.

    Raises `ImportRejected` (nothing written) when rows are invalid and `skip_invalid` is off.
    Rejects go to `rejects_path`, by default FILE.rejects.csv beside the input.
    """
    parsed = read_prompts_csv(path, catalog)
    if parsed.rejects and not skip_invalid:
        problems = parsed.problems()
        listed = problems[:_MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        raise ImportRejected(
            f"{path}: {_count(len(problems), 'invalid row')}, nothing imported:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
            + "\nFix these rows and import again, or pass --skip-invalid to import the "
            f"{_count(len(parsed.valid), 'valid row')} and write the rejects to a file.",
            problems,
        )
    written_rejects = None
    if parsed.rejects:
        written_rejects = rejects_path or path.with_name(path.stem + ".rejects.csv")
    try:
        with database.session() as session:
            plan: UpsertPlan = plan_upsert(session, [spec for _, spec in parsed.valid])
            if not dry_run:
                apply_upsert(session, plan)
    except IntegrityError as exc:
        raise DatabaseError(
            f"{path}: another import wrote the same prompts at the same time "
            f"({driver_message(exc)}); nothing was written: run the import again"
        ) from exc
    if written_rejects is not None and not dry_run:
        parsed.write_rejects(written_rejects)
    return ImportReport(
        path=path,
        inserted=len(plan.inserts),
        updated=len(plan.updates),
        unchanged=plan.unchanged + plan.kept_processed,
        kept_processed=plan.kept_processed,
        rejected=len(parsed.rejects),
        dry_run=dry_run,
        warnings=parsed.warnings,
        rejects_path=written_rejects,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory: give the path of a .csv file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _empty_message(path: Path) -> str:
    return (
        f"{path} is empty: a prompts CSV starts with a header line naming its columns, at least "
        "`topic`"
    )


def _decode(path: Path, data: bytes) -> str:
    reencode = "re-save it as UTF-8 (in Excel: Save As > 'CSV UTF-8')"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path} is UTF-16, not UTF-8: {reencode}")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(
            f"{path}, line {line}: contains a NUL byte, so it is not a UTF-8 text file (binary, "
            f"or saved in a 16-bit encoding): {reencode}, or remove the NUL bytes"
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's habit) is fine
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path} is not UTF-8: byte 0x{data[exc.start]:02X} on line {line} is not valid "
            f"UTF-8 (the file is probably Latin-1 or Windows-1252): {reencode}, or convert it "
            f"with `iconv -f cp1252 -t utf-8 {path.name} > fixed.csv`"
        ) from None
    if not text.strip():
        raise InputError(_empty_message(path))
    return text


def _read_frame(text: str, nrows: int | None = None) -> list[list[str]]:
    # Everything as text (types are pydantic's job), empty cells as "", blank lines kept so
    # that line numbers can be counted.
    frame = pd.read_csv(
        io.StringIO(text),
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


def _line_of_record(text: str, index: int) -> int:
    before = _read_frame(text, nrows=index) if index else []
    return list(_start_lines([*before, []]))[-1]


def _parse(path: Path, text: str, offset: int) -> tuple[list[list[str]], list[int]]:
    """Records and the line each starts on, `offset` lines having been cut off the top."""
    try:
        records = _read_frame(text)
    except EmptyDataError:
        raise InputError(_empty_message(path)) from None
    except ParserError as exc:
        raise InputError(_parser_message(path, text, str(exc), offset)) from None
    return records, [offset + line for line in _start_lines(records)]


def _parser_message(path: Path, text: str, message: str, offset: int) -> str:
    # pandas numbers records, not lines; turn its record index into the line a user sees.
    if m := re.search(r"EOF inside string starting at row (\d+)", message):
        line = offset + _line_of_record(text, int(m.group(1)))
        return (
            f"{path}, line {line}: a quoted cell opens here and never closes (unbalanced "
            '"): add the closing quote, and double any quote inside a cell ("")'
        )
    if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message):
        line = offset + _line_of_record(text, int(m.group(2)) - 1)
        return (
            f"{path}, line {line}: {m.group(3)} cells but the header has {m.group(1)}: quote "
            'cells that contain commas ("a, b"), or add the missing column to the header'
        )
    return f"{path} is not a readable CSV file: {message}"


def _check_header(path: Path, header: list[str], line: int) -> list[str]:
    columns = [name.strip().lower() for name in header]
    problems = []
    for position, name in enumerate(columns, start=1):
        if not name:
            problems.append(f"column {position} has no name: name it, or remove the extra comma")
        elif columns.index(name) != position - 1:
            problems.append(f"column `{name}` appears twice: keep one")
        elif name not in KNOWN_COLUMNS and not name.startswith(EXTRA_PREFIX):
            close = difflib.get_close_matches(name, KNOWN_COLUMNS, n=1, cutoff=0.7)
            hint = f"did you mean `{close[0]}`? " if close else ""
            problems.append(
                f"unknown column `{name}`: {hint}Prefix client fields with `{EXTRA_PREFIX}` "
                f"(`{EXTRA_PREFIX}{name}`) to keep them for templates"
            )
    if "topic" not in columns:
        found = ", ".join(f"`{c}`" for c in columns if c)
        problems.insert(
            0, f"no `topic` column: the header must name one (found {found or 'no columns'})"
        )
    if problems:
        raise InputError(f"{path}, line {line} (header): " + "; ".join(problems))
    return columns


def _validate_row(
    cells: dict[str, str], catalog: PresetCatalog
) -> tuple[PromptSpec | None, list[str], list[str]]:
    """Build one row's spec; return it (or None), every problem it has, and its warnings."""
    values = {name: value.strip() for name, value in cells.items()}
    problems: list[str] = []
    # A cell a spreadsheet would run as a formula (=HYPERLINK(...), =cmd|...) is refused here,
    # before it reaches the database, templates and exports: no prompt starts with "=" on
    # purpose. (Exports neutralise formula cells too; this keeps them out in the first place.)
    for name, value in values.items():
        if value.startswith("="):
            shown = value if len(value) <= 40 else value[:37] + "..."
            problems.append(
                f"`{name}`: starts with `=` ({shown}), which a spreadsheet runs as a formula: "
                "reword the cell so it does not start with `=`"
            )
    overrides: DecodingOverrides | dict[str, str] = {}
    notes: tuple[str, ...] = ()
    try:
        preset = catalog.merge(values.get("preset") or None)  # an unknown preset, alone
        # Each setting alone (typed as the decoder reads it: "0.9" is 0.9), then all of them
        # over the row's preset: the relations between them, and what they make moot.
        overrides = DecodingOverrides.model_validate(
            {k: v for k, v in values.items() if k in DECODING_FIELDS and v}
        )
        notes = settle({**preset, **overrides.settings()}).warnings
    except ConfigError as exc:  # an unknown preset
        problems.append(f"`preset`: {exc}")
    except ValidationError as exc:
        problems += describe_validation_error(exc, DECODING_FIELDS)
    data: dict[str, object] = {"topic": values.get("topic", ""), "decoding": overrides}
    data |= {k: v for k, v in values.items() if k in BASE_COLUMNS and k != "topic" and v}
    data["extra"] = {
        k.removeprefix(EXTRA_PREFIX): v
        for k, v in values.items()
        if k.startswith(EXTRA_PREFIX) and v
    }
    try:
        spec = PromptSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_field_problem(err) for err in exc.errors()] + problems
    else:
        # The row's format and system message over its preset's: the plain form with a system
        # message is refused now, since no setting can change it later (row and preset win).
        if spec.preset is None or spec.preset in catalog:  # else reported above
            try:
                catalog.style(
                    spec.preset, PromptStyle(prompt_format=spec.prompt_format, system=spec.system)
                )
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        return None, problems, []
    return spec, [], list(notes)


def _field_problem(err: ErrorDetails) -> str:
    loc = err["loc"]
    if loc == ("topic",) and err["type"] == "string_too_short":
        return "`topic`: is empty; every row needs a topic"
    if loc[:1] == ("extra",) and len(loc) > 1:
        # Client fields are stored without their prefix; name the column the user wrote.
        err = {**err, "loc": (f"{EXTRA_PREFIX}{loc[1]}",)}
    return describe_error(err, KNOWN_COLUMNS)


def _duplicate_reasons(
    spec: PromptSpec, line: int, seen_ids: dict[str, int], seen_keys: dict[str, int]
) -> list[str]:
    if spec.external_id is not None:
        first = seen_ids.setdefault(spec.external_id, line)
        if first != line:
            return [
                f"`external_id`: {spec.external_id!r} is also on line {first}; ids must be "
                "unique within a file"
            ]
        return []
    key = spec.content_key()
    first = seen_keys.setdefault(key, line)
    if first != line:
        return [
            f"same prompt as line {first}: give one of them an `external_id`, or raise "
            "`variants` to get several articles from one prompt"
        ]
    return []
