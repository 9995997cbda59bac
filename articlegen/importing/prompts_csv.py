"""CSV import: a client's prompts file becomes validated `PromptSpec`s, then database rows.

Reading is strict and explains itself: every problem names the file, the line (as an editor
counts lines, quoted newlines included), the column and the fix. The file's text becomes records
in `csv_text`; what no cell may hold is `cells`'s. Writing is all-or-nothing by default;
`skip_invalid` writes the valid rows and hands back the rejects, to a path checked before
anything is written.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import IntegrityError

from articlegen.core.describe import describe_error, describe_validation_error
from articlegen.core.errors import ConfigError, DatabaseError, ImportRejected, InputError
from articlegen.core.files import check_output_file
from articlegen.db import Database, driver_message
from articlegen.db.prompts import UpsertPlan, apply_upsert, plan_upsert
from articlegen.generator.chat import parse_style
from articlegen.generator.decoding import DECODING_FIELDS, DecodingOverrides, settle
from articlegen.generator.presets import PresetCatalog
from articlegen.importing.cells import control_problem, control_problems, formula_problems
from articlegen.importing.csv_text import read_records
from articlegen.importing.specs import BASE_COLUMNS, EXTRA_PREFIX, PromptSpec

__all__ = ["ImportReport", "ParsedCsv", "RejectedRow", "import_prompts_csv", "read_prompts_csv"]

KNOWN_COLUMNS = (*BASE_COLUMNS, *DECODING_FIELDS)
# How many row problems an all-or-nothing error lists before pointing at --rejects.
_MAX_LISTED_PROBLEMS = 100
# A header name longer than this is quoted cut short: no column is named by a paragraph.
_MAX_COLUMN_NAME = 60


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
    table = read_records(path)
    records, lines = table.records, table.lines
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
    if skip_invalid and rejects_path is not None and not dry_run:
        # Before the file is even read: a rejects path that can't be written, or that is the
        # input itself or the database, would otherwise fail (or destroy either) after the
        # import.
        check_output_file(rejects_path, "rejects file", (path,), database.files)
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
        if not dry_run:  # before the import writes
            check_output_file(written_rejects, "rejects file", (path,), database.files)
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


def _check_header(path: Path, header: list[str], line: int) -> list[str]:
    columns = [name.strip().lower() for name in header]
    problems = []
    for position, (raw, name) in enumerate(zip(header, columns, strict=True), start=1):
        if (control := control_problem(raw)) is not None:
            problems.append(f"the name of column {position} {control}")
        elif len(name) > _MAX_COLUMN_NAME:
            problems.append(
                f"column {position}'s name is {len(name):,} characters long "
                f"({name[:_MAX_COLUMN_NAME]!r}…): is the file comma-separated?"
            )
        elif not name:
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
        # Names holding control characters are reported above, and never echoed: an escape
        # sequence quoted back would reach the terminal.
        found = ", ".join(
            f"`{c}`"
            for c in columns
            if c and len(c) <= _MAX_COLUMN_NAME and control_problem(c) is None
        )
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
    # Control and bidi characters (`importing.cells`): refused before anything else reads the
    # cells, so no message quotes an escape sequence back to the terminal.
    if problems := control_problems(cells):
        return None, problems, []
    values = {name: value.strip() for name, value in cells.items()}
    problems = formula_problems(values)
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
                own = {"prompt_format": spec.prompt_format, "system": spec.system}
                catalog.style(spec.preset, parse_style(own))  # as a run reads the prompt
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
