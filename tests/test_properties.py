"""Property-based tests (Hypothesis): the CSV import is exact or refuses, and post-processing
keeps its promises, for inputs no one would think to write by hand.

The import property runs on a SQLite file: any table of known columns and client fields, with
any text (commas, quotes, newlines, empty cells, odd numbers), either imports exactly what it
holds, read back row by row, or fails with an `ArticlegenError` and writes nothing.
"""

from __future__ import annotations

import csv
import io
import itertools
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from articlegen.core.errors import ArticlegenError
from articlegen.db import Database, Prompt
from articlegen.generator import PresetCatalog
from articlegen.generator.postprocess import (
    PostprocessConfig,
    cut_to_sentence,
    normalize,
    postprocess,
    remove_terminal_loop,
    split_paragraphs,
    strip_echo,
    words,
)
from articlegen.importing import import_prompts_csv

from .conftest import row_counts

# --- the CSV import ------------------------------------------------------------------------

TEXT_COLUMNS = ("prompt", "external_id", "system", "tags")
NUMBER_COLUMNS = ("priority", "variants", "temperature")
# Printable text of any script, with what CSV quoting and the import's trimming must get right
# (commas, quotes, line breaks, spaces of every kind): most tables of it import.
PRINTABLE = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="\u202a\u202b"
                      "\u202c\u202d\u202e\u2066\u2067\u2068\u2069"),
        st.sampled_from(list(' ,;"\'\n\r\t\u00a0\u3000')),
    ),
    max_size=30,
)  # fmt: skip
# Anything at all (every code point but surrogates), and cells made to be refused.
ANY_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["=1+1", "a\x1bb", "\u202eabc", "\x85", "NA", "null", "a, b", '"q"']),
)
TOPIC = PRINTABLE.filter(lambda t: bool(t.strip()) and t.strip()[0] != "=")
NUMBERS = {
    "priority": st.integers(min_value=-1000, max_value=1000).map(str),
    "variants": st.integers(min_value=1, max_value=5).map(str),
    "temperature": st.floats(min_value=0.01, max_value=2.0).map(str),
}
ODD_NUMBER = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " 3 ", "+5", "1_000", "1e3", "0x10", "1.0", "\u0663", "two"]),
)


def _cells(column: str, wild: bool) -> st.SearchStrategy[str]:
    """A column's cells: printable text and numbers in range, or, in a wild table, anything
    at times (so that about half the tables import and half are refused)."""
    tame = TOPIC if column == "topic" else NUMBERS.get(column, PRINTABLE)
    if not wild:
        return tame
    return st.one_of(tame, tame, tame, ODD_NUMBER if column in NUMBERS else ANY_TEXT)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header (always `topic`, sometimes other known columns and client fields) and rows."""
    columns = ["topic"]
    columns += draw(st.lists(st.sampled_from(TEXT_COLUMNS + NUMBER_COLUMNS), unique=True))
    columns += [f"x_{n}" for n in draw(st.lists(st.sampled_from("abc"), unique=True))]
    columns = draw(st.permutations(columns))
    wild = draw(st.booleans())
    rows = draw(
        st.lists(
            st.tuples(*(_cells(c, wild) for c in columns)),
            min_size=1,
            max_size=4,
        )
    )
    return columns, [list(row) for row in rows]


def _csv_text(columns: list[str], rows: list[list[str]]) -> str:
    # The csv module's defaults are Excel's: CRLF line ends, so a cell holding a lone CR or LF
    # is quoted. (With "\n" as the line end it leaves a lone CR bare, which any CSV reader,
    # ours included, takes for a line end: a file that does not say what the table says.)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _number(cell: str) -> Decimal:
    try:
        return Decimal(cell.strip())
    except InvalidOperation:  # the import took a number Python's Decimal can't read
        raise AssertionError(f"imported {cell!r} as a number") from None


def _expected(column: str, cell: str, stored: Prompt) -> None:
    """Assert that `stored` holds what `cell` of `column` says."""
    value = cell.strip()
    if column == "topic":
        assert stored.topic == value
    elif column in ("prompt", "external_id", "system"):
        assert getattr(stored, column) == (value or None)
    elif column == "tags":
        parts = (p.strip() for p in value.replace(";", ",").split(","))
        assert stored.tags == list(dict.fromkeys(p for p in parts if p))
    elif column in ("priority", "variants"):
        assert getattr(stored, column) == (
            _number(value) if value else {"priority": 0}.get(column, 1)
        )
    elif column == "temperature":
        assert stored.decoding.get("temperature") == (float(_number(value)) if value else None)
    else:  # a client field
        assert stored.extra.get(column.removeprefix("x_")) == (value or None)


def test_csv_import_is_exact_or_refused_and_writes_nothing(
    catalog: PresetCatalog, tmp_path: Path
) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'properties.db'}")
    names = itertools.count()

    @settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
    @given(table=tables())
    def check(table: tuple[list[str], list[list[str]]]) -> None:
        columns, rows = table
        with database.session() as session:
            session.execute(delete(Prompt))
        path = tmp_path / f"table-{next(names)}.csv"
        path.write_bytes(_csv_text(columns, rows).encode("utf-8"))  # as written, no newline mapping
        before = row_counts(database)
        refused: ArticlegenError | None = None
        try:
            report = import_prompts_csv(database, path, catalog)
        except ArticlegenError as exc:
            refused = exc
        if refused is not None:
            event("refused")  # --hypothesis-show-statistics shows the mix (about half)
            assert str(refused)  # a message for the user, never an empty one
            assert row_counts(database) == before
            return
        event("imported")
        kept = [row for row in rows if any(cell.strip() for cell in row)]  # blank lines skipped
        assert (report.inserted, report.rejected) == (len(kept), 0)
        with database.session(write=False) as session:
            stored = list(session.scalars(select(Prompt).order_by(Prompt.id)))
        assert len(stored) == len(kept)
        for row, prompt in zip(kept, stored, strict=True):
            for column, cell in zip(columns, row, strict=True):
                _expected(column, cell, prompt)

    try:
        check()
    finally:
        database.close()


def test_a_sep_line_imports_what_the_comma_file_imports(
    catalog: PresetCatalog, tmp_path: Path
) -> None:
    """Excel's `sep=;` first line is honoured: the file imports exactly as its comma twin."""
    rows = [["topic", "prompt", "x_note"], ["Night trains", "Sleepers, couchettes", 'a "b"; c']]
    stored: list[list[tuple[str, str | None, dict[str, str]]]] = []
    for delimiter, lead in ((",", ""), (";", "sep=;\n"), ("\t", "SEP=\t\r\n")):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
        path = tmp_path / f"sep-{len(stored)}.csv"
        path.write_text(lead + out.getvalue(), encoding="utf-8")
        database = Database.open(f"sqlite:///{tmp_path / f'sep-{len(stored)}.db'}")
        report = import_prompts_csv(database, path, catalog)
        assert (report.inserted, report.rejected) == (1, 0)
        with database.session(write=False) as session:
            stored.append([(p.topic, p.prompt, p.extra) for p in session.scalars(select(Prompt))])
        database.close()
    assert stored[0] == [("Night trains", "Sleepers, couchettes", {"note": 'a "b"; c'})]
    assert stored[1] == stored[0]
    assert stored[2] == stored[0]


def test_a_comma_file_whose_cells_hold_semicolons_is_not_taken_for_another_delimiter(
    catalog: PresetCatalog, tmp_path: Path
) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'semi.db'}")
    path = tmp_path / "semi.csv"
    path.write_text("topic\nRail; sea; air\nTabs\tand; pipes|too\n", encoding="utf-8")
    report = import_prompts_csv(database, path, catalog)
    assert (report.inserted, report.rejected) == (2, 0)
    with database.session(write=False) as session:
        topics = [p.topic for p in session.scalars(select(Prompt).order_by(Prompt.id))]
    database.close()
    assert topics == ["Rail; sea; air", "Tabs\tand; pipes|too"]


# --- post-processing ---------------------------------------------------------------------------

# Model text: words, sentence ends, whitespace of every kind, controls, combining marks.
RAW = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            ["the", "end", "Buy", "now", ".", "!", "?", "…", " ", "  ", "\n", "\n\n\n", "\t",
             "\r\n", "\x00", "\x1b", "\x85", "\ufffd", "e\u0301", "\u0301", "\u2028", '"', "'"]
        ),
        max_size=60,
    ).map("".join),
)  # fmt: skip
FORBIDDEN = {chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


@settings(max_examples=300)
@given(RAW)
@example("the\x00\u0301")  # a control between a letter and its accent: found by hand
def test_normalize_is_idempotent_and_leaves_clean_text(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert not FORBIDDEN & set(once)
    for gone in ("\ufffd", "\t", "\r", "  ", "\n\n\n"):
        assert gone not in once
    assert once == once.strip()
    assert unicodedata.is_normalized("NFC", once)
    assert all(line == line.strip() for line in once.split("\n"))


@settings(max_examples=300)
@given(RAW, st.text(max_size=30), st.booleans())
def test_an_article_is_a_clean_prefix_of_the_normalised_text(
    continuation: str, prompt: str, lead: bool
) -> None:
    config = PostprocessConfig(keep_prompt_as_lead=lead)
    result = postprocess(continuation, prompt=prompt, topic="Night trains", config=config)
    source = normalize(prompt + continuation if lead else continuation)
    # Only cut, never added to: the body, whitespace aside, starts the normalised text.
    assert " ".join(source.split()).startswith(" ".join(result.body.split()))
    # A single line break becomes a paragraph break, the one thing that lengthens the text.
    assert len(result.body) <= len(source) + source.count("\n")
    assert result.body == "\n\n".join(result.paragraphs)
    assert all(p and p == p.strip() and "\n" not in p for p in result.paragraphs)
    assert result.word_count == len(words(result.body))
    assert not FORBIDDEN & set(result.body + result.title)
    assert "\n" not in result.title


@settings(max_examples=300)
@given(RAW)
def test_cutting_to_a_sentence_and_removing_a_loop_only_shorten(text: str) -> None:
    cut, was_cut = cut_to_sentence(text)
    assert text.startswith(cut)
    assert was_cut == bool(text[len(cut) :].strip())
    assert cut_to_sentence(cut) == (cut, False)  # what ends a sentence stays whole
    kept, phrase = remove_terminal_loop(text)
    assert text.startswith(kept)
    assert (phrase is None) == (kept == text)
    assert split_paragraphs(text) == split_paragraphs("\n".join(split_paragraphs(text)))


@given(st.text(min_size=1, max_size=30), st.text(max_size=30))
def test_an_echoed_prompt_is_stripped_once(prompt: str, rest: str) -> None:
    assert strip_echo(prompt, prompt + rest) == rest
    assert strip_echo("", rest) == rest
