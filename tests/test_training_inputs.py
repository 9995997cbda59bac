"""What `articlegen train` and `articlegen models rm` refuse, and that a refusal writes
nothing: bad corpus files, bad options, names in use, a model another process holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from articlegen.core.settings import load_settings
from articlegen.db import Database
from articlegen.db.models import ModelKind, RegisteredModel
from articlegen.db.registry import ensure_model, finish_training, start_training
from articlegen.training.store import exclusive

from .conftest import CliHarness
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .training_support import model_directories, registered, set_env, structured_corpus

pytestmark = pytest.mark.usefixtures("fresh_contexts")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.docx", b"PK\x03\x04", "a corpus file is .txt, .csv (a `text` column) or .jsonl"),
        ("missing.txt", None, "does not exist: check the path"),
        ("latin.txt", b"one\n\ntwo\n\nbad \xe9\n", "line 5: byte 0xE9 is not UTF-8"),
        ("cols.csv", b"title,body\nA,B\n", "has no `text` column (its columns: title, body)"),
        ("lines.jsonl", b'{"text": "a"}\n{oops\n', "line 2: not JSON"),
        ("shape.jsonl", b'{"text": "a"}\n["b"]\n', 'line 2: each line must be an object'),
        ("one.txt", b"Only one document here.", "the corpus has 1 distinct document (of 1 read)"),
        ("same.txt", b"Same  text\n\nSame text \n\n Same\ttext", "1 distinct document (of 3 read)"),
        ("seps.txt", b"<|endoftext|>\n\n<|endoftext|>\n", "0 distinct documents (of 0 read)"),
        ("deep.jsonl", b"[" * 100_000 + b"\n", "line 1: not JSON that can be read"),
        ("long.jsonl", b'{"text": "x", "n": ' + b"1" * 5000 + b"}\n", "line 1: not JSON that"),
        ("half.jsonl", b'{"text": "a\\ud800b"}\n', "line 1: the \"text\" holds '\\ud800'"),
        ("wide.csv", "text\nOne\nTwo\n".encode("utf-16"), "is UTF-16 (it starts with a UTF-16"),
    ],
)  # fmt: skip
def test_bad_corpus_files_are_refused_by_name_and_line(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run_cli("train", "bad", "--corpus", str(path), env=training_env)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    if "distinct" not in message:
        assert str(path) in result.stderr
    assert "Traceback" not in result.output
    assert registered(sqlite_url, "bad") is None
    assert not (tmp_path / "models" / "bad").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["../escape", "--corpus", "c.txt"], 1, "model name '../escape': use letters, digits"),
        (["x", "--corpus", "c.txt", "--lr", "0"], 1, "--lr: input should be greater than 0"),
        (["x", "--corpus", "c.txt", "--lr", "nan"], 1, "--lr: input should be a finite number"),
        (["x", "--corpus", "c.txt", "--size", "tiny"], 1, "--size shapes a model trained from"),
        (["x", "--corpus", "c.txt", "--base", "c.txt"], 1, "c.txt is a file, not a model dir"),
        (["x", "--corpus", "c.txt", "--from-scratch", "--base", "m"], 1, "choose --base or"),
        (["x"], 1, "nothing to train on: give --corpus FILE (repeatable) and/or --from-approved"),
        (["x", "--corpus", "c.txt", "--tag", "t"], 1, "--tag and --since choose approved articles"),
        (["x", "--corpus", "c.txt", "--since", "soon"], 2, "'soon' is not a date"),
        (["x", "--resume"], 1, "no model called 'x' in the registry"),
        (["x", "--corpus", "c.txt", "--block-size", "4096"], 1, "longer than the model's context"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_before_anything_is_written(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    structured_corpus(tmp_path / "c.txt", documents=4)
    result = run_cli("train", *args, env=training_env)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        assert session.scalars(select(RegisteredModel)).all() == []
    db.close()
    assert model_directories(tmp_path / "models") == []


def test_a_name_in_use_and_a_model_in_training_are_kept_safe(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    corpus = structured_corpus(tmp_path / "c.txt", documents=20)
    tiny = ["--corpus", str(corpus), "--epochs", "1", "--block-size", "16"]
    assert (
        run_cli("train", "first", *tiny, "--memorisation-samples", "0", env=training_env).exit_code
        == 0
    )
    taken = run_cli("train", "first", *tiny, env=training_env)
    assert taken.exit_code == 1
    assert taken.stderr == (
        "Error: there is already a model called 'first': choose another name, or remove it "
        "first with `articlegen models rm first`\n"
    )

    # Another process holds the model's lock (as a training does): removing it is refused.
    set_env(monkeypatch, training_env, sqlite_url)
    with exclusive(load_settings(), "first"):
        held = subprocess.run(
            [Path(sys.executable).parent / "articlegen", "models", "rm", "first", "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert held.returncode == 1, held.stderr
    assert "is being trained by another process right now" in held.stderr
    assert registered(sqlite_url, "first") is not None
    assert (tmp_path / "models" / "first" / "model").is_dir()
    refused = run_cli("models", "rm", "first", input="n\n")
    assert "Remove model 'first' (fine_tuned, ready)? [y/N]: n\nAborted!" in refused.output
    assert registered(sqlite_url, "first") is not None
    assert refused.exit_code == 1


def test_names_that_would_shadow_another_model_are_refused(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    training_env: dict[str, str],
) -> None:
    run_cli = CliHarness(sqlite_url, tmp_path)
    corpus = str(structured_corpus(tmp_path / "c.txt", documents=4))
    db = Database.open(sqlite_url)
    with db.session() as session:
        ensure_model(session, "house", "org/house", "abc", ModelKind.HUB)
    db.close()
    used = run_cli("train", "house", "--corpus", corpus, env=training_env)
    assert used.exit_code == 1
    assert "'house' already names the hub model org/house in the registry" in used.stderr
    default = run_cli(
        "train", "office", "--corpus", corpus, env={**training_env, "ARTICLEGEN_MODEL": "office"}
    )
    assert default.exit_code == 1
    assert "'office' is ARTICLEGEN_MODEL, the model every run uses by default" in default.stderr
    assert not (tmp_path / "models" / "office").exists()


def test_removing_a_model_keeps_files_that_are_not_in_the_models_directory(
    sqlite_url: str, tmp_path: Path, training_env: dict[str, str]
) -> None:
    """A row whose path points elsewhere (moved, or edited by hand) loses its row only."""
    run_cli = CliHarness(sqlite_url, tmp_path)
    elsewhere = tmp_path / "precious" / "model"
    elsewhere.mkdir(parents=True)
    (elsewhere / "weights.bin").write_bytes(b"keep me")
    db = Database.open(sqlite_url)
    with db.session() as session:
        start_training(
            session, "moved", ModelKind.FINE_TUNED, source=str(elsewhere), base=None,
            base_revision=None, hyperparameters={}, corpus={}, corpus_hash="0" * 64,
        )  # fmt: skip
        finish_training(session, "moved", "sha256:0", 1, {})
    db.close()
    removed = run_cli("models", "rm", "moved", "--yes", env=training_env)
    assert removed.exit_code == 0, removed.output
    assert f"its files in {elsewhere.parent} are not where this setup keeps models" in (
        removed.stdout
    )
    assert (elsewhere / "weights.bin").read_bytes() == b"keep me"
    assert registered(sqlite_url, "moved") is None
