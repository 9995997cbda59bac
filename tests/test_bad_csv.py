"""Bad CSVs through the CLI beyond the one-case-per-file catalogue (`test_bad_inputs.py`): every
bad row listed at once, nothing written."""

from __future__ import annotations

from pathlib import Path

from articlegen.db import Database

from .conftest import CliHarness, row_counts


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
