"""Exports: no control characters in any format, and a folder export replaces what an earlier
one wrote there, never a file it did not write."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from articlegen.core.errors import InputError
from articlegen.db import Database
from articlegen.export import export_articles
from articlegen.export.manifest import MANIFEST_NAME
from articlegen.generator.templates import Templates

from .conftest import CliHarness
from .webapp import seed

HIDDEN = "\u202eevil\u2066\x00\x1b[2J\x85"


def _record(article_id: int, title: str, text: str = "Text.") -> dict[str, Any]:
    return {
        "id": article_id, "title": title, "topic": title, "body": text, "words": 1, "flags": [],
        "review_status": "approved", "model_kind": None, "warning": None,
        "reviewer_note": f"note{HIDDEN}", "metrics": {"flags": [f"f{HIDDEN}"]},
        "markdown": f"# {title}\n\n{text}\n", "html": f"<h1>{title}</h1><p>{text}</p>\n",
    }  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "md", "html"])
def test_no_export_carries_control_or_bidi_characters(fmt: str, tmp_path: Path) -> None:
    records = [_record(1, f"Title{HIDDEN}", f"Line one\r\nline two{HIDDEN}")]
    out = tmp_path / f"out.{fmt}" if fmt in ("csv", "jsonl") else tmp_path / fmt
    files = export_articles(records, fmt, out, Templates()).written  # type: ignore[arg-type]
    for file in files:
        text = file.read_text(encoding="utf-8")
        for char in ("\u202e", "\u2066", "\x00", "\x1b", "\x85", "\r"):
            assert char not in text
    text = files[0].read_text(encoding="utf-8")
    if fmt == "csv":
        (row,) = csv.DictReader(text.splitlines(keepends=True))
        assert (row["title"], row["body"]) == ("Titleevil[2J", "Line one\nline twoevil[2J")
    elif fmt == "jsonl":
        record = json.loads(text)
        assert (record["reviewer_note"], record["metrics"]) == (
            "noteevil[2J", {"flags": ["fevil[2J"]})  # fmt: skip
    else:
        assert "Titleevil[2J" in text
        assert "Line one\nline twoevil[2J" in text


def test_a_csv_formula_behind_a_control_character_is_still_neutralised(tmp_path: Path) -> None:
    records = [_record(1, "\x00=cmd|' /C calc'!A0"), _record(2, "\r=1+1")]
    out = tmp_path / "a.csv"
    export_articles(records, "csv", out, Templates())
    with out.open(encoding="utf-8", newline="") as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    assert titles == ["'=cmd|' /C calc'!A0", "'\n=1+1"]


def _export(records: list[dict[str, Any]], fmt: str, out: Path) -> tuple[list[str], list[str]]:
    done = export_articles(records, fmt, out, Templates())  # type: ignore[arg-type]
    return [p.name for p in done.written], [p.name for p in done.removed]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_exporting_again_replaces_what_the_last_export_wrote(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    records = [_record(1, "One"), _record(2, "Two"), _record(3, "Three")]
    written, removed = _export(records, fmt, out)
    assert written == [f"00001-one.{fmt}", f"00002-two.{fmt}", f"00003-three.{fmt}", f"index.{fmt}"]
    assert removed == []
    # Yours: a file of your own, one named like ours, and one of ours that you changed.
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / f"00009-mine.{fmt}").write_text("mine", encoding="utf-8")
    (out / f"00003-three.{fmt}").write_text("edited by hand", encoding="utf-8")

    written, removed = _export([records[0]], fmt, out)
    assert written == [f"00001-one.{fmt}", f"index.{fmt}"]
    assert removed == [f"00002-two.{fmt}"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST_NAME, f"00001-one.{fmt}", f"00003-three.{fmt}", f"00009-mine.{fmt}",
         f"index.{fmt}", "notes.txt"]
    )  # fmt: skip
    assert (out / f"00003-three.{fmt}").read_text(encoding="utf-8") == "edited by hand"
    index = (out / f"index.{fmt}").read_text(encoding="utf-8")
    assert "Two" not in index
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["articlegen_export"] == 1
    assert sorted(manifest["files"][fmt]) == [f"00001-one.{fmt}", f"index.{fmt}"]


def test_markdown_and_html_exports_share_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    records = [_record(1, "One"), _record(2, "Two")]
    _export(records, "md", out)
    _export(records, "html", out)
    assert _export(records[:1], "md", out) == (["00001-one.md", "index.md"], ["00002-two.md"])
    assert (out / "00002-two.html").exists()  # the HTML export's: not the Markdown one's to remove


@pytest.mark.parametrize(
    ("content", "reason"),
    [("not json", "Expecting value: line 1 column 1 (char 0)"),
     ("[]", "no `articlegen_export: 1` in it"),
     ('{"articlegen_export": 2, "files": {}}', "no `articlegen_export: 1` in it"),
     ('{"articlegen_export": 1}', "no `files` table in it"),
     ('{"articlegen_export": 1, "files": {"txt": {}}}', "unknown format 'txt'"),
     ('{"articlegen_export": 1, "files": {"md": {"../../home/x.md": "0"}}}',
      "'../../home/x.md' is not a file an export writes"),
     ('{"articlegen_export": 1, "files": {"md": {".bashrc": "0"}}}',
      "'.bashrc' is not a file an export writes"),
     ('{"articlegen_export": 1, "files": {"md": {"00001-a.html": "0"}}}',
      "'00001-a.html' is not a file an export writes"),
     (None, "it is not a regular file")],
)  # fmt: skip
def test_a_manifest_that_is_not_ours_is_refused(
    content: str | None, reason: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / MANIFEST_NAME
    if content is None:
        manifest.mkdir()
    else:
        manifest.write_text(content, encoding="utf-8")
    (out / "00001-a.md").write_text("someone's", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        _export([_record(2, "B")], "md", out)
    assert str(caught.value) == (
        f"{manifest} is not an export manifest articlegen wrote ({reason}): export into another "
        "folder, or remove the file if nothing in the folder needs keeping from an earlier export"
    )
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "00001-a.md"]


def test_cli_export_after_a_rejection_removes_the_rejected_articles_file(
    run_cli: CliHarness, database_url: str, tmp_path: Path
) -> None:
    db = Database.open(database_url)
    ids = seed(db, 3)
    db.close()
    assert run_cli("review", "approve", *map(str, ids)).exit_code == 0
    out = tmp_path / "site"
    first = run_cli("export", "--format", "html", "--out", str(out))
    assert first.stdout == f"Exported 3 article(s) to {out} (4 file(s)).\n"
    (out / "about.html").write_text("our own page", encoding="utf-8")
    rejected = next(out.glob(f"{ids[1]:05d}-*.html"))

    assert run_cli("review", "reject", str(ids[1]), "--reason", "off topic").exit_code == 0
    again = run_cli("export", "--format", "html", "--out", str(out))
    assert again.exit_code == 0
    assert again.stdout == (
        f"Exported 2 article(s) to {out} (3 file(s)); removed 1 file(s) of an earlier export.\n"
    )
    assert not rejected.exists()
    assert (out / "about.html").read_text(encoding="utf-8") == "our own page"
    assert sorted(p.name for p in out.glob("0*.html")) == [
        f"{ids[0]:05d}-title-0.html", f"{ids[2]:05d}-title-2.html"]  # fmt: skip
