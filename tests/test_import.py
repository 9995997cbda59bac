"""CSV import against real databases: values, CSV dialect, idempotence, skip-invalid, dry run."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from articlegen.core.errors import ImportRejected
from articlegen.db import Database, Prompt, PromptStatus
from articlegen.generator import PresetCatalog, load_presets
from articlegen.importing import import_prompts_csv, read_prompts_csv

from .conftest import row_counts

EXAMPLES = Path(__file__).parent.parent / "examples" / "prompts.csv"


def _write(tmp_path: Path, text: str, name: str = "prompts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _prompts(db: Database) -> dict[str, Prompt]:
    with db.session() as session:
        return {p.external_id or p.topic: p for p in session.scalars(select(Prompt))}


def test_values_are_stored_typed(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "external_id,topic,prompt,preset,tags,priority,variants,temperature,max_new_tokens,"
        "stop_strings,x_audience,x_Tone\n"
        'a1,Night trains,"Trains at night, in winter",precise," rail; travel ,rail",3,2,0.8,'
        '120,"[""THE END""]",commuters,warm\n',
    )
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.updated, report.unchanged, report.rejected) == (1, 0, 0, 0)
    stored = _prompts(database)["a1"]
    assert stored.topic == "Night trains"
    assert stored.prompt == "Trains at night, in winter"
    assert stored.preset == "precise"
    assert stored.tags == ["rail", "travel"]  # split, stripped, de-duplicated
    assert (stored.priority, stored.variants) == (3, 2)
    assert stored.decoding == {
        "temperature": 0.8,
        "max_new_tokens": 120,
        "stop_strings": ["THE END"],
    }
    assert stored.extra == {"audience": "commuters", "tone": "warm"}
    assert stored.status is PromptStatus.PENDING


def test_the_bundled_examples_import(database: Database, catalog: PresetCatalog) -> None:
    report = import_prompts_csv(database, EXAMPLES, catalog)
    assert report.rejected == 0
    assert report.warnings == []
    assert report.inserted >= 20
    stored = _prompts(database)
    assert any(p.prompt for p in stored.values())
    assert any(p.decoding for p in stored.values())
    assert any(p.extra for p in stored.values())


def test_csv_dialect_bom_quotes_newlines_blank_lines_whitespace(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbf topic , prompt \r\n"
        b"\r\n"
        b'"  Coffee, tea and mate  ","Line one,\r\nline two"\r\n'
        b"\r\n"
        b"   \r\n"
        b'"Quoted ""topic""",\r\n'
    )
    report = import_prompts_csv(database, path, catalog)
    assert report.inserted == 2
    stored = _prompts(database)
    assert stored["Coffee, tea and mate"].prompt == "Line one,\r\nline two"
    assert stored['Quoted "topic"'].prompt is None


def test_reimport_is_idempotent_and_updates_only_pending(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    first = "external_id,topic,priority\na,Alpha,1\nb,Beta,1\nc,Gamma,1\n"
    path = _write(tmp_path, first)
    import_prompts_csv(database, path, catalog)

    again = import_prompts_csv(database, path, catalog)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)

    with database.session() as session:
        session.execute(
            update(Prompt).where(Prompt.external_id == "c").values(status=PromptStatus.DONE)
        )
    _write(
        tmp_path, "external_id,topic,priority\na,Alpha,1\nb,Beta v2,5\nc,Gamma v2,9\nd,Delta,0\n"
    )
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 2)
    assert report.kept_processed == 1
    stored = _prompts(database)
    assert (stored["b"].topic, stored["b"].priority) == ("Beta v2", 5)  # pending: updated
    assert (stored["c"].topic, stored["c"].priority) == ("Gamma", 1)  # done: kept
    assert len(stored) == 4


def test_rows_without_external_id_are_identified_by_content(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(tmp_path, "topic,temperature\nAlpha,0.9\nBeta,\n")
    import_prompts_csv(database, path, catalog)
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.unchanged) == (0, 2)
    # "0.90" is the same setting as "0.9": identity is on typed values, not on the text.
    _write(tmp_path, "topic,temperature\nAlpha,0.90\nBeta,\nGamma,\n")
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.unchanged) == (1, 2)
    assert len(_prompts(database)) == 3


def test_dry_run_counts_but_writes_nothing(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(tmp_path, "topic\nAlpha\nBeta\n")
    report = import_prompts_csv(database, path, catalog, dry_run=True)
    assert (report.inserted, report.dry_run) == (2, True)
    assert row_counts(database)["prompts"] == 0


def test_skip_invalid_imports_valid_rows_and_writes_rejects(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "external_id,topic,top_p,x_note\n"
        "a,Alpha,0.9,keep\n"
        'b,,0.9,"no topic"\n'
        "c,Gamma,1.5,bad p\n"
        "d,Delta,,fine\n",
    )
    rejects = tmp_path / "out" / "rejected.csv"
    rejects.parent.mkdir()
    report = import_prompts_csv(database, path, catalog, skip_invalid=True, rejects_path=rejects)
    assert (report.inserted, report.rejected) == (2, 2)
    assert set(_prompts(database)) == {"a", "d"}
    with rejects.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["line"] for r in rows] == ["3", "4"]
    assert rows[0]["reason"] == "`topic`: is empty; every row needs a topic"
    assert "`top_p`: input should be less than or equal to 1, got '1.5'" in rows[1]["reason"]
    assert rows[1]["x_note"] == "bad p"  # original cells kept for fixing
    assert list(rows[0]) == ["line", "reason", "external_id", "topic", "top_p", "x_note"]


def test_skip_invalid_default_rejects_path(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(tmp_path, "topic,priority\nAlpha,1\nBeta,high\n")
    report = import_prompts_csv(database, path, catalog, skip_invalid=True)
    assert report.rejects_path == tmp_path / "prompts.rejects.csv"
    assert report.rejects_path.exists()


def test_line_numbers_count_quoted_newlines_and_blank_lines(
    catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        'topic,prompt\nAlpha,"one\ntwo\nthree"\n\nBeta,ok\n,missing topic\n"Gamma\nGamma",x\n'
        "Delta,y\n",
    )
    parsed = read_prompts_csv(path, catalog)
    assert [line for line, _ in parsed.valid] == [2, 6, 8, 10]
    assert [r.line for r in parsed.rejects] == [7]


def test_decoding_warnings_name_the_line(catalog: PresetCatalog, tmp_path: Path) -> None:
    path = _write(tmp_path, "topic,preset,temperature\nAlpha,greedy,0.7\nBeta,,0.7\n")
    parsed = read_prompts_csv(path, catalog)
    assert len(parsed.valid) == 2
    assert len(parsed.warnings) == 1
    assert parsed.warnings[0].startswith("line 2: `temperature` is set but decoding is greedy")


@pytest.mark.parametrize("header", ["Topic,PRESET", " topic , preset "])
def test_header_names_are_case_and_space_insensitive(
    catalog: PresetCatalog, tmp_path: Path, header: str
) -> None:
    parsed = read_prompts_csv(_write(tmp_path, f"{header}\nAlpha,beam\n"), catalog)
    assert parsed.valid[0][1].preset == "beam"


def test_an_external_id_is_adopted_by_the_prompt_imported_without_it(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    import_prompts_csv(database, _write(tmp_path, "topic\nNight trains\nBoats\n"), catalog)
    path = _write(
        tmp_path, "external_id,topic\nn1,Night trains\nb1,Boats\nn2,Night trains\n", "b.csv"
    )
    report = import_prompts_csv(database, path, catalog)
    # n1 adopts the id-less prompt; n2 (same content, another id) is a prompt of its own.
    assert (report.inserted, report.updated, report.unchanged) == (1, 2, 0)
    assert sorted(_prompts(database)) == ["b1", "n1", "n2"]


def test_sqlite_import_waits_for_another_writer(
    sqlite_url: str, catalog: PresetCatalog, tmp_path: Path
) -> None:
    """A writer in another connection holds the database; the import waits, then succeeds."""
    import sqlite3
    import threading
    import time

    database = Database.open(sqlite_url)
    holder = sqlite3.connect(
        sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE elsewhere (x INTEGER)")  # a write the import must wait for

    def release() -> None:
        time.sleep(1.0)
        holder.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    started = time.perf_counter()
    report = import_prompts_csv(database, _write(tmp_path, "topic\nAlpha\nBeta\n"), catalog)
    waited = time.perf_counter() - started
    thread.join()
    holder.close()
    assert report.inserted == 2
    assert waited >= 0.9
    assert row_counts(database)["prompts"] == 2
    database.close()


def test_sqlite_lock_held_too_long_is_a_database_error(
    sqlite_url: str, catalog: PresetCatalog, tmp_path: Path
) -> None:
    import sqlite3

    from articlegen.core.errors import DatabaseError

    Database.open(sqlite_url).close()  # migrated
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    database = Database.open(sqlite_url + "?timeout=0.3")
    try:
        with pytest.raises(DatabaseError) as caught:
            import_prompts_csv(database, _write(tmp_path, "topic\nAlpha\n"), catalog)
        assert str(caught.value) == (
            f"database {sqlite_url}?timeout=0.3: database is locked. Nothing of this "
            "operation was written; try again, and check that no other process holds the "
            "database"
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert row_counts(database)["prompts"] == 0
    database.close()


@pytest.mark.parametrize("lead", ["\n\n", "  \n\t\n", "\r\n"])
def test_blank_lines_before_the_header(catalog: PresetCatalog, tmp_path: Path, lead: str) -> None:
    skipped = lead.count("\n")
    path = _write(tmp_path, f"{lead}topic,prompt\nAlpha,x\n,missing\n")
    parsed = read_prompts_csv(path, catalog)
    assert [line for line, _ in parsed.valid] == [skipped + 2]
    assert [r.line for r in parsed.rejects] == [skipped + 3]


def test_prompt_format_and_system_are_stored(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "external_id,topic,prompt_format,system\n"
        'c1,Night trains,chat,"You write for a travel magazine, in British English."\n'
        "c2,Sourdough,plain,\n"
        "c3,Tea,,Be brief.\n"
        "c4,Coffee,,\n",
    )
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.rejected) == (4, 0)
    stored = {k: (p.prompt_format, p.system) for k, p in _prompts(database).items()}
    assert stored == {
        "c1": ("chat", "You write for a travel magazine, in British English."),
        "c2": ("plain", None),
        "c3": (None, "Be brief."),  # the preset's format, else ARTICLEGEN_PROMPT_FORMAT
        "c4": (None, None),
    }
    # A changed system message is a changed prompt: a re-import updates the pending one.
    path.write_text(
        "external_id,topic,prompt_format,system\nc3,Tea,,Be briefer.\n", encoding="utf-8"
    )
    assert import_prompts_csv(database, path, catalog).updated == 1
    assert _prompts(database)["c3"].system == "Be briefer."


def test_prompts_without_a_format_keep_their_content_key(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    # The key as it was computed before prompts had a format or a system message: a file
    # imported then and again now must find its prompts, not add them a second time.
    path = _write(tmp_path, "topic,preset\nNight trains,precise\n")
    ((_, spec),) = read_prompts_csv(path, catalog).valid
    before = {k: v for k, v in spec.model_dump(mode="json").items() if k != "external_id"}
    del before["prompt_format"], before["system"]
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert spec.content_key() == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    import_prompts_csv(database, path, catalog)
    with_columns = _write(tmp_path, "topic,preset,prompt_format,system\nNight trains,precise,,\n")
    report = import_prompts_csv(database, with_columns, catalog)
    assert (report.inserted, report.unchanged) == (0, 1)
    # A format set makes it another prompt.
    chat = _write(tmp_path, "topic,preset,prompt_format\nNight trains,precise,chat\n")
    assert import_prompts_csv(database, chat, catalog).inserted == 1


@pytest.mark.parametrize(
    ("csv_text", "problem"),
    [
        (
            "topic,prompt_format\nA,chatml\n",
            "line 2: `prompt_format`: input should be 'plain', 'chat' or 'auto', got 'chatml'",
        ),
        (
            "topic,prompt_format\nA,Chat\n",
            "line 2: `prompt_format`: input should be 'plain', 'chat' or 'auto', got 'Chat'",
        ),
        (
            "topic,prompt_format,system\nA,plain,Be brief.\n",
            "line 2: `system` is set but `prompt_format` is `plain`, which has no system "
            "message: set `prompt_format` to `chat` or `auto` (for an instruct model), or drop "
            "`system`",
        ),
        (
            "topic,system\nA,=HYPERLINK(1)\n",
            "line 2: `system`: starts with `=` (=HYPERLINK(1)), which a spreadsheet runs as a "
            "formula: reword the cell so it does not start with `=`",
        ),
    ],
)
def test_bad_prompt_formats_and_system_messages_are_refused(
    database: Database, catalog: PresetCatalog, tmp_path: Path, csv_text: str, problem: str
) -> None:
    path = _write(tmp_path, csv_text)
    before = row_counts(database)
    with pytest.raises(ImportRejected) as caught:
        import_prompts_csv(database, path, catalog)
    assert caught.value.problems == [problem]
    assert str(caught.value).startswith(f"{path}: 1 invalid row, nothing imported:\n  {problem}\n")
    assert row_counts(database) == before


def test_a_system_message_on_a_plain_preset_is_refused_naming_the_preset(
    tmp_path: Path,
) -> None:
    presets = _write(tmp_path, '[plainly]\nprompt_format = "plain"\n', name="presets.toml")
    path = _write(tmp_path, "topic,preset,system\nA,plainly,Be brief.\nB,plainly,\n")
    parsed = read_prompts_csv(path, load_presets(presets))
    assert parsed.problems() == [
        "line 2: `system` is set but `prompt_format` is `plain`, which has no system message: "
        "set `prompt_format` to `chat` or `auto` (for an instruct model), or drop `system` "
        "(`prompt_format` from preset `plainly`)"
    ]
    assert [line for line, _ in parsed.valid] == [3]
