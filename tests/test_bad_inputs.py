"""The bad-input catalogue: one case per file in `tests/bad_inputs/`, each run through the CLI.

A case (TOML) names the command (`args`), what it reads (`input`, written to `{input}` in its
`encoding`, with `repeat.times` copies of `repeat.line` after the header; `files` under `{dir}`),
its environment (`env`) and the message: stderr must start with `Error: ` and `error`, contain
every `error_has` and none of `error_lacks`. Every case must exit 1 without a traceback and
leave the database as it was. `{input}`, `{dir}` and `{model}` (a tiny local model) are filled in.

What text files can't express, under `{dir}`, in this order (paths relative to `{dir}`):
`copy_model` (a copy of the tiny model at that path, to damage), then `files`, then
`json_set` (keys set in a JSON file: `{"m/config.json" = {n_embd = 96}}`), `truncate` (a file
cut to that many bytes), `sparse` (a file of that many zero bytes, taking no disk), `fifos` (named
pipes) and `symlinks` (link = target).
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from articlegen.db import Database

from .conftest import CliHarness, row_counts

CATALOGUE = Path(__file__).parent / "bad_inputs"
CASES = sorted(CATALOGUE.glob("*.toml"))
SEED = b"external_id,topic\nseed-1,Already here\n"


def _fill(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace("{" + name + "}", value)
    return text


def _write_input(case: dict[str, Any], path: Path) -> None:
    text: str = case.get("input", "")
    repeat = case.get("repeat")
    if repeat is not None:
        header, _, rest = text.partition("\n")
        body = "".join(repeat["line"].replace("{n}", str(n)) for n in range(repeat["times"]))
        text = f"{header}\n{body}{rest}"
    path.write_bytes(text.encode(case.get("encoding", "utf-8")))


def _special_files(case: dict[str, Any], work: Path) -> None:
    for name, values in case.get("json_set", {}).items():
        data = json.loads((work / name).read_text(encoding="utf-8"))
        (work / name).write_text(json.dumps({**data, **values}), encoding="utf-8")
    for name, size in case.get("truncate", {}).items():
        os.truncate(work / name, size)
    for name, size in case.get("sparse", {}).items():
        with (work / name).open("wb") as handle:
            handle.truncate(size)
    for name in case.get("fifos", []):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(work / name)
    for name, target in case.get("symlinks", {}).items():
        (work / name).symlink_to(work / target)


def test_the_catalogue_has_every_kind_of_case() -> None:
    names = {c.stem for c in CASES}
    assert len(names) >= 92
    for expected in ("csv_formula_cell", "csv_100000_rows", "unreachable_database"):
        assert expected in names
    # One class at least of each kind of hostile input (issue 13's list), by the case's name.
    kinds = (
        "id_", "database_file_", "url_", "model_", "rejects_", "csv_named_pipe", "csv_over",
        "csv_semicolon", "prefect_api_unreachable", "template_never_ends", "template_too_large",
        "retry_", "review_reject_blank",
    )  # fmt: skip
    for kind in kinds:
        assert any(n.startswith(kind) for n in names), kind


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_bad_input_is_explained_and_changes_nothing(
    case_file: Path,
    run_cli: CliHarness,
    database_url: str,
    tmp_path: Path,
    tiny_model_dir: Path,
) -> None:
    case = tomllib.loads(case_file.read_text(encoding="utf-8"))
    work = tmp_path / "case"
    work.mkdir()
    places = {"input": str(work / "input.csv"), "dir": str(work), "model": str(tiny_model_dir)}
    if "input" in case:
        _write_input(case, work / "input.csv")
    if "copy_model" in case:
        shutil.copytree(tiny_model_dir, work / case["copy_model"])
    for name, content in case.get("files", {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content, encoding="utf-8")
    _special_files(case, work)
    seed = tmp_path / "seed.csv"
    seed.write_bytes(SEED)
    assert run_cli("import", str(seed)).exit_code == 0
    db = Database.open(database_url)
    before = row_counts(db)

    env = {name: _fill(value, places) for name, value in case.get("env", {}).items()}
    result = run_cli(*(_fill(a, places) for a in case["args"]), env=env)

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: " + _fill(case["error"], places)), result.stderr
    for part in case.get("error_has", []):
        assert _fill(part, places) in result.stderr
    for part in case.get("error_lacks", []):
        assert part not in result.stderr
    assert "Traceback" not in result.stderr
    assert row_counts(db) == before
    db.close()
