"""The command line: each command's output and exit code, errors as messages, docs kept true."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from articlegen import __version__
from articlegen.cli import cli
from articlegen.core.settings import Settings
from articlegen.db import Database
from articlegen.generator import DECODING_FIELDS

from .conftest import CliHarness, row_counts

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "prompts.csv"


def _commands(group: click.Group, prefix: str = "articlegen") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


COMMANDS = _commands(cli)


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"articlegen, version {__version__}\n"


@pytest.mark.parametrize("path", ["articlegen", *[p for p, _ in COMMANDS]])
def test_every_command_has_help_with_an_example(path: str) -> None:
    args = path.split()[1:]
    for flag in ("--help", "-h"):
        result = CliRunner().invoke(cli, [*args, flag])
        assert result.exit_code == 0, result.output
        assert "Example: articlegen" in result.output


def test_readme_documents_every_command_and_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path, command in COMMANDS:
        if not isinstance(command, click.Group):
            assert f"`{path}" in readme, f"README does not document `{path}`"
    for name in Settings.model_fields:
        variable = f"ARTICLEGEN_{name.upper()}"
        assert variable in readme, f"README does not document {variable}"
    assert "ARTICLEGEN_TEST_POSTGRES_URL" in readme
    for name in DECODING_FIELDS:
        assert f"| `{name}` |" in readme, f"README's decoding table lacks `{name}`"
    assert "make demo" in readme
    assert "make test" in readme


def test_db_upgrade_reports_before_and_after(run_cli: CliHarness, database_url: str) -> None:
    first = run_cli("db", "upgrade")
    assert first.exit_code == 0
    assert first.stdout.endswith("upgraded from empty to 0009.\n")
    again = run_cli("db", "upgrade")
    assert again.exit_code == 0
    assert again.stdout.endswith("is up to date (revision 0009).\n")


def test_import_prints_a_summary(run_cli: CliHarness) -> None:
    result = run_cli("import", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{EXAMPLES}: imported into ")
    assert result.stdout.endswith(": 25 inserted, 0 updated, 0 unchanged, 0 rejected.\n")
    again = run_cli("import", str(EXAMPLES))
    assert again.stdout.endswith(": 0 inserted, 0 updated, 25 unchanged, 0 rejected.\n")


def test_import_dry_run(run_cli: CliHarness) -> None:
    result = run_cli("import", str(EXAMPLES), "--dry-run")
    assert result.exit_code == 0
    assert "would import into" in result.stdout
    assert result.stdout.endswith("Dry run: nothing was written.\n")
    listed = run_cli("prompts", "list", "--format", "json")
    assert json.loads(listed.stdout) == []


def test_import_skip_invalid_writes_rejects(run_cli: CliHarness, tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    source.write_text("topic,temperature\nGood,0.5\nBad,-1\n", encoding="utf-8")
    rejects = tmp_path / "bad-rows.csv"
    result = run_cli("import", str(source), "--skip-invalid", "--rejects", str(rejects))
    assert result.exit_code == 0
    assert ": 1 inserted, 0 updated, 0 unchanged, 1 rejected.\n" in result.stdout
    assert f"Rejected rows written to {rejects}.\n" in result.stdout
    assert "Bad" in rejects.read_text(encoding="utf-8")


def test_import_warnings_go_to_stderr(run_cli: CliHarness, tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    source.write_text("topic,preset,top_p\nGreedy topic,greedy,0.5\n", encoding="utf-8")
    result = run_cli("import", str(source))
    assert result.exit_code == 0
    assert result.stderr == (
        f"Warning: {source}, line 2: `top_p` is set but decoding is greedy or beam search "
        "(`do_sample` is false), so it is ignored: use a sampling preset such as `nucleus`, or "
        "drop `top_p`\n"
    )


def test_prompts_list_in_every_format(run_cli: CliHarness) -> None:
    assert run_cli("prompts", "list").stdout == "No prompts.\n"
    run_cli("import", str(EXAMPLES))

    as_json = json.loads(run_cli("prompts", "list", "--format", "json").stdout)
    assert len(as_json) == 25
    assert as_json[0]["external_id"] == "tec-001"  # priority 8 runs first
    assert as_json[0]["tags"] == ["tech", "databases"]
    assert as_json[0]["status"] == "pending"

    rows = list(csv.DictReader(io.StringIO(run_cli("prompts", "list", "--format", "csv").stdout)))
    assert [r["external_id"] for r in rows] == [r["external_id"] for r in as_json]

    table = run_cli("prompts", "list", "--status", "pending", "--limit", "3").stdout.splitlines()
    assert table[0].split() == [
        "id", "external_id", "topic", "status", "priority", "variants", "preset", "tags"
    ]  # fmt: skip
    assert len(table) == 4
    assert "tec-001" in table[1]

    done = run_cli("prompts", "list", "--status", "done", "--format", "json")
    assert json.loads(done.stdout) == []


def test_presets_list(run_cli: CliHarness) -> None:
    result = run_cli("presets", "list", "--format", "json")
    names = [p["name"] for p in json.loads(result.stdout)]
    assert names[:6] == ["greedy", "beam", "top_k", "nucleus", "creative", "precise"]


def test_user_presets_file_is_used(run_cli: CliHarness, tmp_path: Path) -> None:
    presets = tmp_path / "house.toml"
    presets.write_text('[house]\ndescription = "Ours"\ntop_p = 0.7\n', encoding="utf-8")
    env = {"ARTICLEGEN_PRESETS_FILE": str(presets)}
    source = tmp_path / "p.csv"
    source.write_text("topic,preset\nA,house\n", encoding="utf-8")
    assert run_cli("import", str(source), env=env).exit_code == 0
    without = run_cli("import", str(source))
    assert without.exit_code == 1
    assert "unknown preset `house`" in without.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "x.csv", "--rejects", "r.csv"], "--rejects only applies with --skip-invalid"),
        (["prompts", "list", "--status", "lost"], "Invalid value for '--status'"),
        (["prompts", "list", "--format", "xml"], "Invalid value for '--format'"),
        (["import"], "Missing argument 'FILE'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(run_cli: CliHarness, args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        (
            {"ARTICLEGEN_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x"},
            ["prompts", "list"],
            "Error: cannot connect to database postgresql+psycopg://u:***@127.0.0.1:1/x: ",
        ),
        ({}, ["import", "nowhere.csv"], "Error: nowhere.csv does not exist: check the path\n"),
        (
            {"ARTICLEGEN_PRESETS_FILE": "missing.toml"},
            ["presets", "list"],
            "Error: presets file missing.toml does not exist: fix ARTICLEGEN_PRESETS_FILE",
        ),
        (
            {"PREFECT_API_URL": ""},
            ["fan-out", "--runs", "2"],
            "Error: fan-out starts runs on a work pool, which needs a Prefect server: set "
            "PREFECT_API_URL",
        ),
        ({}, ["jobs", "cancel", "7"], "Error: no job 7: `articlegen jobs list` shows the jobs"),
    ],
)
def test_user_errors_are_messages(
    run_cli: CliHarness, env: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli(*args, env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert "hunter2" not in result.output


def test_console_script_shows_no_traceback(tmp_path: Path) -> None:
    """The installed `articlegen` in a real process: message, exit 1, no traceback."""
    bad = tmp_path / "bad.csv"
    bad.write_text("topic,top_p\nA,2\n", encoding="utf-8")
    env = {**os.environ, "ARTICLEGEN_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    script = Path(sys.executable).parent / "articlegen"
    done = subprocess.run(
        [str(script), "import", str(bad)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"Error: {bad}: 1 invalid row, nothing imported:\n  line 2: ")
    assert "Traceback" not in done.stderr


def test_model_init_command(tmp_path: Path) -> None:
    target = tmp_path / "m"
    result = CliRunner().invoke(cli, ["models", "init", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Wrote a random tiny GPT-2 (")
    assert result.stdout.endswith(f"Use it with ARTICLEGEN_MODEL={target}\n")
    assert (target / "tokenizer.json").exists()
    again = CliRunner().invoke(cli, ["models", "init", str(target)])
    assert again.exit_code == 1
    assert again.stderr == f"Error: {target} exists and is not empty: choose a new directory\n"


def _preview_env(model: str, tmp_path: Path) -> dict[str, str]:
    # `preview` looks the model up in the registry: a database of the test's own, never the
    # working directory's articlegen.db, which another test process may be using.
    return {"ARTICLEGEN_MODEL": model, "ARTICLEGEN_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}


def test_preview_writes_one_article(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = _preview_env(str(tiny_model_dir), tmp_path)
    args = ["preview", "Night trains", "--set", "max_new_tokens=30", "--seed", "3"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Night trains\n")
    assert "(nucleus, seed 3)" in result.stdout
    assert result.stderr.endswith(", seed 3\n")
    assert " 30 tokens (length)" in result.stderr
    again = CliRunner().invoke(cli, args, env=env)
    assert again.stdout == result.stdout  # the seed reproduces the article
    html = CliRunner().invoke(cli, [*args, "--format", "html"], env=env)
    assert html.stdout.startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--set", "temprature=1"],
            1,
            "Error: decoding settings (preset `nucleus`): `temprature`: "
            "unknown setting (did you mean `temperature`?)\n",
        ),
        (["--set", "temperature"], 2, "--set takes NAME=VALUE"),
        (
            ["--preset", "greedy", "--set", "top_p=0.5", "--set", "max_new_tokens=2"],
            0,
            "Warning: `top_p` is set but decoding is greedy",
        ),
        (["--seed", str(2**64)], 2, "Invalid value for '--seed'"),
    ],
)
def test_preview_settings_errors(
    tiny_model_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    env = _preview_env(str(tiny_model_dir), tmp_path)
    result = CliRunner().invoke(cli, ["preview", "Trains", *args], env=env, catch_exceptions=False)
    assert result.exit_code == code
    assert result.stderr.startswith(message) or message in result.stderr


def test_preview_offline_hub_model_explains_the_ways_out(tmp_path: Path) -> None:
    env = _preview_env("gpt2", tmp_path)
    result = CliRunner().invoke(cli, ["preview", "Trains"], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: cannot load model 'gpt2': HF_HUB_OFFLINE is set and the model is not in the "
        "local cache. Three ways out"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", None),  # empty means unset
        (".", "Error: cannot read presets file .: Is a directory; point ARTICLEGEN_PRESETS_FILE"),
    ],
)
def test_presets_file_setting_edge_cases(value: str, message: str | None) -> None:
    result = CliRunner().invoke(
        cli, ["presets", "list"], env={"ARTICLEGEN_PRESETS_FILE": value}, catch_exceptions=False
    )
    if message is None:
        assert result.exit_code == 0
        assert "nucleus" in result.stdout
    else:
        assert result.exit_code == 1
        assert result.stderr.startswith(message)


NOOP_SCRIPT = """
import sys
from articlegen.cli import main
sys.argv = ["articlegen", "generate"]
try:
    main()
except SystemExit as exc:
    print("exit", exc.code)
print("prefect imported:", "prefect" in sys.modules)
"""


def test_generate_with_nothing_pending_answers_without_prefect_or_the_model(
    tmp_path: Path, sqlite_url: str
) -> None:
    # The model does not exist and the Prefect server's address refuses connections: loading
    # either would fail. The answer comes anyway, Prefect is not even imported, and no job is
    # recorded.
    env = {
        **os.environ,
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tmp_path / "no-such-model"),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    empty = subprocess.run(
        [sys.executable, "-c", NOOP_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    assert empty.stdout.splitlines() == [
        "Nothing to generate: no pending prompts (0 pending, 0 done, 0 failed). Import more "
        "with `articlegen import FILE`.",
        "exit 0",
        "prefect imported: False",
    ]
    assert empty.stderr == ""
    db = Database.open(sqlite_url)
    assert row_counts(db)["jobs"] == 0
    db.close()


@pytest.mark.parametrize("command", [("jobs", "list"), ("prompts", "list"), ("articles", "list")])
def test_a_limit_past_the_integer_range_is_a_usage_error(
    run_cli: CliHarness, command: tuple[str, str]
) -> None:
    result = run_cli(*command, "--limit", "9223372036854775808")
    assert result.exit_code == 2
    assert (
        "Error: Invalid value for '--limit': 9223372036854775808 is not in the range "
        "1<=x<=2147483647." in result.stderr
    )
    assert "Traceback" not in result.output
