"""The project's settings file: `articlegen config show|set|unset`, and the environment over it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from articlegen.cli import cli
from articlegen.core.errors import ConfigError
from articlegen.core.settings import load_settings

from .conftest import CliHarness


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose articlegen.toml is the one read (not the tests' stand-in)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARTICLEGEN_CONFIG")
    monkeypatch.delenv("ARTICLEGEN_MODEL", raising=False)
    return tmp_path / "articlegen.toml"


def _config(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, ["config", *args], env=env, catch_exceptions=False)


def test_set_types_the_value_keeps_comments_and_the_settings_read_it(project: Path) -> None:
    project.write_text('# our project\nschedule = "0 2 * * *"  # nightly\n', encoding="utf-8")
    result = _config("set", "kv_cache_mb", "512")
    assert result.exit_code == 0, result.output
    assert result.stdout == "articlegen.toml: kv_cache_mb = 512\n"
    assert _config("set", "model", "./models/mine").exit_code == 0
    text = project.read_text(encoding="utf-8")
    assert text.startswith('# our project\nschedule = "0 2 * * *"  # nightly\n')
    assert tomllib.loads(text) == {
        "schedule": "0 2 * * *",
        "kv_cache_mb": 512,  # an integer, as the setting reads it, not the string typed
        "model": "./models/mine",
    }
    settings = load_settings()
    assert (settings.kv_cache_mb, settings.model, settings.schedule) == (
        512,
        "./models/mine",
        "0 2 * * *",
    )


def test_the_environment_wins_over_the_file_and_show_says_where_each_value_comes_from(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write_text('model = "from-file"\nlease_seconds = 60\n', encoding="utf-8")
    monkeypatch.setenv("ARTICLEGEN_MODEL", "from-env")
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", "postgresql://editor:s3cret@db.example/articles")
    assert load_settings().model == "from-env"
    result = _config("show", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert (rows["model"]["value"], rows["model"]["source"]) == ("from-env", "environment")
    assert (rows["lease_seconds"]["value"], rows["lease_seconds"]["source"]) == ("60", "file")
    assert (rows["device"]["value"], rows["device"]["source"]) == ("auto", "default")
    # A password in the database URL is never shown.
    assert rows["database_url"]["value"] == "postgresql://editor:***@db.example/articles"
    assert "s3cret" not in result.output
    note = _config("set", "model", "other")
    assert "Note: ARTICLEGEN_MODEL is set in this environment and wins over the file." in (
        note.stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "kv_cache_mb", "5"], "`kv_cache_mb`: Input should be greater than or equal to 16"),
        (["set", "device", "gpu"], "`device`: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
        (["set", "modle", "x"], "unknown setting `modle` (did you mean `model`?)"),
        (["set", "model", "  "], "`model`: give a value, or `articlegen config unset model`"),
        (["unset", "sheduel"], "unknown setting `sheduel` (did you mean `schedule`?)"),
    ],
)
def test_a_bad_key_or_value_is_refused_and_the_file_is_untouched(
    project: Path, args: list[str], message: str
) -> None:
    before = 'model = "kept"  # comment\n'
    project.write_text(before, encoding="utf-8")
    result = _config(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert "Traceback" not in result.output
    assert project.read_text(encoding="utf-8") == before


def test_unset_removes_only_that_key(project: Path) -> None:
    project.write_text('model = "a"\ndevice = "cpu"\n', encoding="utf-8")
    assert _config("unset", "model").stdout == "articlegen.toml: model removed.\n"
    assert _config("unset", "model").stdout == (
        "articlegen.toml does not set model; nothing changed.\n"
    )
    assert tomllib.loads(project.read_text(encoding="utf-8")) == {"device": "cpu"}
    assert load_settings().model == "gpt2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model = \n", "articlegen.toml is not a TOML file articlegen can read (Invalid value"),
        ('modle = "x"\n', "articlegen.toml: unknown setting `modle` (did you mean `model`?)"),
        ("lease_seconds = 1\n", "articlegen.toml: `lease_seconds`: Input should be greater"),
        ('device = "gpu"\n', "articlegen.toml: `device`: Input should be 'auto', 'cpu'"),
    ],
)
def test_a_broken_file_is_named_with_its_key_by_every_command(
    project: Path, text: str, message: str
) -> None:
    project.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    result = CliRunner().invoke(cli, ["jobs", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")


def test_a_bad_environment_value_is_named_as_the_variable_not_the_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write_text("lease_seconds = 60\n", encoding="utf-8")
    monkeypatch.setenv("ARTICLEGEN_LEASE_SECONDS", "1")
    with pytest.raises(ConfigError, match=r"^environment variable ARTICLEGEN_LEASE_SECONDS: "):
        load_settings()


def test_another_file_can_be_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "team" / "settings.toml"
    monkeypatch.setenv("ARTICLEGEN_CONFIG", str(elsewhere))
    monkeypatch.delenv("ARTICLEGEN_MODEL", raising=False)
    assert _config("set", "model", "team-model").exit_code == 0
    assert tomllib.loads(elsewhere.read_text(encoding="utf-8")) == {"model": "team-model"}
    assert load_settings().model == "team-model"


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("web_secret", "k" * 40, "articlegen.toml: web_secret = (set, hidden)\n"),
        (
            "database_url",
            "postgresql://alice:S3cretPW@db.example/x?sslpassword=S3cretPW",
            "articlegen.toml: database_url = postgresql://alice:***@db.example/x?sslpassword=***\n",
        ),
    ],
)
def test_set_never_prints_a_secret_back(project: Path, key: str, value: str, shown: str) -> None:
    result = _config("set", key, value)
    assert result.exit_code == 0, result.output
    assert result.stdout == shown
    assert "S3cretPW" not in result.output
    assert "k" * 40 not in result.output
    refused = _config("set", "web_secret", "short-secret-pw")  # too short: refused
    assert refused.exit_code == 1
    assert "short-secret-pw" not in refused.output


def test_unset_removes_a_key_that_is_no_setting_as_the_error_advises(project: Path) -> None:
    project.write_text('modle = "x"\nmodel = "kept"\n', encoding="utf-8")
    broken = CliRunner().invoke(cli, ["jobs", "list"], catch_exceptions=False)
    assert "`articlegen config unset modle` removes it" in broken.stderr
    assert _config("unset", "modle").stdout == "articlegen.toml: modle removed.\n"
    assert load_settings().model == "kept"


def test_set_checks_the_file_alone_not_this_shells_variables(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTICLEGEN_DEVICE", "gpu")  # wrong, but not the file's business
    assert _config("set", "model", "foo").exit_code == 0
    project.write_text('kv_cache_mb = "abc"\n', encoding="utf-8")
    blamed = _config("set", "model", "bar")
    assert blamed.exit_code == 1
    assert blamed.stderr.startswith("Error: articlegen.toml already has a bad `kv_cache_mb`")


def test_set_keeps_the_files_permissions_and_writes_through_a_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared.toml"
    shared.write_text('schedule = "0 2 * * *"\n', encoding="utf-8")
    shared.chmod(0o644)
    link = tmp_path / "articlegen.toml"
    link.symlink_to(shared)
    env: dict[str, str | None] = {"ARTICLEGEN_CONFIG": str(link)}
    assert _config("set", "model", "team", env=env).exit_code == 0
    assert link.is_symlink()
    assert tomllib.loads(shared.read_text(encoding="utf-8"))["model"] == "team"
    assert shared.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("kind", ["directory", "dangling link"])
def test_a_settings_path_that_is_no_file_is_an_error(
    project: Path, kind: str, tmp_path: Path
) -> None:
    if kind == "directory":
        project.mkdir()
    else:
        project.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match=r"^articlegen\.toml is (not a regular file|a link to)"):
        load_settings()


def test_a_misspelt_variable_is_warned_once_with_the_closest_name(run_cli: CliHarness) -> None:
    # pydantic-settings ignores names it does not know: without the warning, the misspelt
    # database URL below would leave the setting at its default, silently.
    env = {
        "ARTICLEGEN_DATABSE_URL": "sqlite:///elsewhere.db",
        "articlegen_modle": "gpt2",  # names are read without regard to case
        "ARTICLEGEN_FROBNICATE": "1",
    }
    result = run_cli("prompts", "list", env=env)
    assert (result.exit_code, result.stdout) == (0, "No prompts.\n")
    assert result.stderr == (
        "Warning: environment variable ARTICLEGEN_DATABSE_URL is not an articlegen setting "
        "(did you mean ARTICLEGEN_DATABASE_URL?), and is ignored\n"
        "Warning: environment variable ARTICLEGEN_FROBNICATE is not an articlegen setting, and "
        "is ignored; the README's settings table lists them\n"
        "Warning: environment variable articlegen_modle is not an articlegen setting "
        "(did you mean ARTICLEGEN_MODEL?), and is ignored\n"
    )
    assert not (run_cli.cwd / "elsewhere.db").exists()


def test_every_known_variable_passes_without_a_warning(run_cli: CliHarness) -> None:
    env = {"ARTICLEGEN_MODEL": "gpt2", "ARTICLEGEN_LEASE_SECONDS": "60", "ARTICLEGEN_CONFIG": ""}
    env["ARTICLEGEN_TEST_POSTGRES_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    result = run_cli("prompts", "list", env=env)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "No prompts.\n", "")
