"""Bad CSVs through the CLI: each gets its own message and exit 1, and the database is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import Database

from .conftest import CliHarness, row_counts

SEED = b"external_id,topic\nseed-1,Already here\n"

# (case id, file bytes, the message after "Error: <path>")
CASES = [
    (
        "missing_topic",
        b"title,prompt\nA,B\n",
        ", line 1 (header): no `topic` column: the header "
        "must name one (found `title`, `prompt`); unknown column `title`",
    ),
    (
        "unknown_column",
        b"topic,temprature\nA,0.5\n",
        ", line 1 (header): unknown column "
        "`temprature`: did you mean `temperature`? Prefix client fields with `x_` (`x_temprature`)",
    ),
    (
        "not_utf8",
        "topic\nCafé culture\n".encode("cp1252"),
        " is not UTF-8: byte 0xE9 on line 2 "
        "is not valid UTF-8 (the file is probably Latin-1 or Windows-1252): re-save it as UTF-8",
    ),
    (
        "unbalanced_quote",
        b'topic,prompt\nA,"never closed\nB,x\n',
        ', line 2: a quoted cell opens here and never closes (unbalanced "): add the closing quote',
    ),
    (
        "empty_file",
        b"",
        " is empty: a prompts CSV starts with a header line naming its columns, at least `topic`",
    ),
    ("header_only", b"topic,prompt\n", " has a header but no prompt rows: add one row per topic"),
    (
        "duplicate_external_id",
        b"external_id,topic\nA,x\nB,y\nA,z\n",
        ": 1 invalid row, nothing imported:\n"
        "  line 4: `external_id`: 'A' is also on line 2; ids must be unique within a file",
    ),
    (
        "bad_number",
        b"topic,priority\nA,high\n",
        ": 1 invalid row, nothing imported:\n  line 2: "
        "`priority`: input should be a valid integer, unable to parse string as an integer, got "
        "'high'",
    ),
    (
        "out_of_range",
        b"topic,top_p\nA,1.5\n",
        ": 1 invalid row, nothing imported:\n  line 2: "
        "`top_p`: input should be less than or "
        "equal to 1, got '1.5'",
    ),
    (
        "nul_byte",
        b"topic\nA\x00B\n",
        ", line 2: contains a NUL byte, so it is not a UTF-8 text file",
    ),
    ("utf16", "topic\nA\n".encode("utf-16"), " is UTF-16, not UTF-8: re-save it as UTF-8"),
    (
        "empty_topic",
        b"topic,prompt\n,Write about nothing\n",
        ": 1 invalid row, nothing imported:\n  line 2: `topic`: is empty; every row needs a topic",
    ),
    (
        "too_many_cells",
        b"topic,prompt\nA,B\nC,D,E\n",
        ', line 3: 3 cells but the header has 2: quote cells that contain commas ("a, b")',
    ),
    (
        "unknown_preset",
        b"topic,preset\nA,nucleas\n",
        ": 1 invalid row, nothing imported:\n  "
        "line 2: `preset`: unknown preset `nucleas`: did you mean `nucleus`?",
    ),
    (
        "duplicate_column",
        b"topic,topic\nA,B\n",
        ", line 1 (header): column `topic` appears twice: keep one",
    ),
]


@pytest.mark.parametrize(("content", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_csv_is_explained_and_changes_nothing(
    run_cli: CliHarness, database_url: str, tmp_path: Path, content: bytes, message: str
) -> None:
    seed = tmp_path / "seed.csv"
    seed.write_bytes(SEED)
    assert run_cli("import", str(seed)).exit_code == 0
    db = Database.open(database_url)
    before = row_counts(db)

    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    result = run_cli("import", str(bad))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {bad}{message}")
    assert row_counts(db) == before
    db.close()


def test_all_bad_rows_are_listed_and_nothing_is_written(
    run_cli: CliHarness, database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "mixed.csv"
    bad.write_text("topic,variants\nGood one,1\n,2\nAnother good,3\nBad count,0\n", "utf-8")
    result = run_cli("import", str(bad))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {bad}: 2 invalid rows, nothing imported:\n"
        "  line 3: `topic`: is empty; every row needs a topic\n"
        "  line 5: `variants`: input should be greater than or equal to 1, got '0'\n"
        "Fix these rows and import again, or pass --skip-invalid to import the 2 valid rows and "
        "write the rejects to a file.\n"
    )
    db = Database.open(database_url)
    assert row_counts(db)["prompts"] == 0
    db.close()
