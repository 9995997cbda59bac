"""The Prefect flows, run for real under Prefect's test harness (a local temporary server)."""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import State
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from prefect.utilities.callables import parameter_schema
from sqlalchemy import select

from articlegen.core.errors import ConfigError, DatabaseError, ModelError
from articlegen.core.settings import load_settings
from articlegen.db import Article, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.flows.generate import generate_articles, run_generate
from articlegen.generator import PresetCatalog, load_presets
from articlegen.importing import import_prompts_csv
from articlegen.runs import (
    GenerateParams,
    RunResult,
    close_contexts,
    open_job,
    summary_markdown,
)
from articlegen.runs.form import FORM_DEFAULTS, PRESET_NAMES

from .test_runner import PROMPTS_CSV


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    with (
        # 120 s, as the CLI allows (`cli.prefect_env`): a first start on two busy cores is slow.
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}  # ~1 s saved per flow run
        ),
    ):
        yield


@pytest.fixture
def flow_env(
    prefect_server: None,
    sqlite_url: str,
    tiny_model_dir: Path,
    catalog: PresetCatalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    """A SQLite database with the 12 test prompts, and the settings a flow reads."""
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ARTICLEGEN_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("ARTICLEGEN_DEVICE", "cpu")
    path = tmp_path / "prompts.csv"
    path.write_text(PROMPTS_CSV.replace("{long}", "word " * 600), encoding="utf-8")
    db = Database.open(sqlite_url)
    import_prompts_csv(db, path, catalog)
    yield db
    db.close()
    close_contexts()


def _artifact_keys(job_id: int) -> set[str]:
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts() if a.key}
    return {k for k in keys if k.startswith(f"job-{job_id}-")}


def _artifacts(job_id: int) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts()
    return {a.key: a for a in found if a.key and a.key.startswith(f"job-{job_id}-")}


def _state(flow_run_id: str | None) -> State[Any]:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state


def test_generate_articles_flow(
    flow_env: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ARTICLEGEN_WEB_URL", "http://127.0.0.1:8000/")
    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        result = run_generate(GenerateParams(batch_size=4, overrides={"max_new_tokens": 24}))
    assert result.status == JobStatus.COMPLETED_WITH_ERRORS.value
    assert (result.total, result.done, result.failed) == (16, 15, 1)
    # Where the time went: every batch stage, the wait for batches finishing beside the next
    # one's generation, and the orchestration around them.
    assert set(result.seconds) == {
        "loading",
        "prompting",
        "generation",
        "post-processing",
        "rendering",
        "write-back",
        "waiting",
        "orchestration",
    }
    assert result.seconds["generation"] > 0
    # One line per batch in the run's log: what it wrote, how fast, what failed and why.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch ")]
    assert len(lines) == 4  # 16 articles, claimed 4 at a time (variants stay together)
    pattern = r"batch [1-4]: [1-4] articles? written, [\d,]+ tokens/s, "
    assert all(re.match(pattern, line) for line in lines), lines
    assert sum("none failed" in line for line in lines) == 3
    assert any(", 1 failed (prompt 12: the prompt is 601 tokens;" in line for line in lines)
    with flow_env.session(write=False) as session:
        job = session.get_one(Job, result.job)
        prompts = list(session.scalars(select(Prompt)))
        articles = list(session.scalars(select(Article)))
    assert job.flow_run_id
    assert job.started_at is not None
    assert job.finished_at is not None
    assert len(articles) == 15
    assert sum(p.status is PromptStatus.DONE for p in prompts) == 11
    failed = [p for p in prompts if p.status is PromptStatus.FAILED]
    assert [p.external_id for p in failed] == ["p12"]
    assert _artifact_keys(job.id) == {
        f"job-{job.id}-progress",
        f"job-{job.id}-summary",
        f"job-{job.id}-articles",
    }
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(job.flow_run_id)  # type: ignore[arg-type]
    assert run.name == f"generate-articles-job-{job.id}"
    # A run with a failed prompt is not a green Completed: it is Failed, named for what it is.
    state = _state(job.flow_run_id)
    assert (state.type, state.name) == (StateType.FAILED, "CompletedWithErrors")
    assert state.message == (
        f"1 of 16 articles failed, 15 written: see the job-{job.id}-summary artifact"
    )

    found = _artifacts(job.id)
    assert all(a.description for a in found.values())
    summary = found[f"job-{job.id}-summary"].data
    model = (job.model or "").replace("_", "\\_")  # escaped: model text is never markup
    assert f"- **Model:** {model} at sha256:" in summary
    assert "- **Preset:** nucleus for prompts naming none \\(a prompt's own wins\\)" in summary
    assert (
        '- **Parameters:** {"batch\\_size": 4, "overrides": {"max\\_new\\_tokens": 24}}' in summary
    )
    assert "- prompt 12: the prompt is" in summary
    assert f"](http://127.0.0.1:8000/articles/{articles[0].id})" in summary
    table = found[f"job-{job.id}-articles"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert len(rows) == 15
    by_id = {row["article"]: row for row in rows}
    for article in articles:
        row = by_id[article.id]
        assert row["review"] == f"http://127.0.0.1:8000/articles/{article.id}"
        assert row["perplexity"] == round(article.metrics["perplexity"], 1)
        assert row["excerpt"]
        assert " ".join(article.body.split()).startswith(row["excerpt"].rstrip("…"))
        assert len(row["excerpt"]) <= 120
    progress = found[f"job-{job.id}-progress"]
    assert progress.data == 100.0
    # Failed articles are finished too: the bar ends full, its line says how fast it went.
    assert (progress.description or "").startswith("16/16 articles · ")

    again = run_generate(GenerateParams(batch_size=4))
    assert (again.total, again.done, again.status) == (0, 0, "completed")
    with flow_env.session(write=False) as session:
        clean = session.get_one(Job, again.job)
    assert _state(clean.flow_run_id).type == StateType.COMPLETED


def test_the_summary_never_lets_a_name_or_tag_become_markup() -> None:
    hostile = "m`<img src=x onerror=alert(7)>[c](javascript:alert(9))"
    result = RunResult(job=1, status="completed", total=0, model=hostile, model_revision="r`x")
    params = GenerateParams(tags=[hostile], preset=hostile, template="t")
    markdown = summary_markdown(result, [], params, "http://127.0.0.1:8000")
    assert "<img" not in markdown
    assert "](javascript" not in markdown
    ours = markdown.replace("`articlegen articles list --job 1`", "")
    assert re.search(r"(?<!\\)`", ours) is None  # every backtick of theirs escaped
    assert "&lt;img src=x onerror=alert\\(7\\)&gt;" in markdown  # shown, as text


def test_the_form_has_flat_fields_a_preset_dropdown_and_no_internal_fields() -> None:
    schema = parameter_schema(generate_articles).model_dump()
    fields = schema["properties"]
    assert not {"params", "job_id", "shard", "shards", "resume_job"} & set(fields)
    assert fields["preset"]["enum"] == list(PRESET_NAMES)
    assert set(PRESET_NAMES) == set(load_presets().names())  # the bundled presets, all of them
    assert fields["preset"]["default"] == "nucleus"
    # The six decoding fields are plain inputs, empty by default; the form checks as they are
    # typed that they hold a number (an integer, for three).
    for name in ("temperature", "top_p", "noise_sigma", "max_new_tokens", "top_k", "seed"):
        assert (fields[name]["type"], fields[name]["default"]) == ("string", "")
    decimal = re.compile(fields["temperature"]["pattern"])
    integer = re.compile(fields["top_k"]["pattern"])
    assert all(decimal.match(v) for v in ("", "0.8", "1", ".5", "1e-3", " 2.0 "))
    assert not any(decimal.match(v) for v in ("abc", "0.8.1", "nan", "1,5"))
    assert all(integer.match(v) for v in ("", "40", "-1"))
    assert not any(integer.match(v) for v in ("4.5", "forty"))
    assert (fields["limit"]["type"], fields["limit"]["default"]) == ("integer", 0)
    assert fields["more_decoding"]["description"].startswith("Any other decoding settings")
    assert (fields["more_decoding"]["type"], fields["more_decoding"]["default"]) == ("string", "")
    assert (fields["tags"]["type"], fields["tags"]["default"]) == ("array", [])
    # No field needs a None toggle: none of them may be null.
    assert not any("anyOf" in field for field in fields.values())
    assert schema["required"] == []
    # What the form leaves alone is what the flow's signature defaults to, field for field.
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(generate_articles.fn).parameters.items()
        if name not in ("params", "job_id")
    }
    assert defaults == FORM_DEFAULTS


def test_a_run_from_the_form_fields(flow_env: Database) -> None:
    state = generate_articles(
        limit=2,
        batch_size=2,
        preset="greedy",
        max_new_tokens=6,  # a number from Python; the form sends text
        more_decoding='{"repetition_penalty": 1.3}',
        return_state=True,
    )
    assert state.is_completed(), state
    with flow_env.session(write=False) as session:
        job = session.scalars(select(Job)).one()
    assert job.parameters["preset"] == "greedy"
    assert job.parameters["limit"] == 2
    assert job.parameters["overrides"] == {"max_new_tokens": 6, "repetition_penalty": 1.3}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": "-1"}, "`overrides`: `temperature`"),
        (
            {"max_new_tokens": "5", "more_decoding": '{"max_new_tokens": 9}'},
            "max_new_tokens set both in its own field and in more_decoding: keep one",
        ),
        ({"more_decoding": '{"temprature": 0.5}'}, "temprature"),
        ({"more_decoding": "{temperature: 0.5}"}, "more_decoding: not JSON ("),
        ({"more_decoding": "[1, 2]"}, "more_decoding: give a JSON object of settings"),
        ({"template": "newsletter"}, "template newsletter: no newsletter.md.j2"),
        ({"prompt_format": "chat"}, "has no chat template: use an instruct model"),
        (
            {"system": "Be brief.", "no_system": True},
            "system gives a message and no_system asks for none: keep one",
        ),
        (
            {"params": GenerateParams(), "limit": 3},
            "give either params or the form's fields, not both (limit)",
        ),
    ],
)
def test_bad_form_fields_fail_the_run_with_a_message_before_it_claims(
    flow_env: Database, fields: dict[str, Any], message: str
) -> None:
    state = generate_articles(**fields, return_state=True)
    assert state.is_failed()
    assert message in (state.message or "")
    with flow_env.session(write=False) as session:
        assert {p.status for p in session.scalars(select(Prompt))} == {PromptStatus.PENDING}
        # Refused before its job row was written: the jobs list shows no failed run.
        assert session.scalars(select(Job)).all() == []


def test_dry_run_flow_claims_nothing(flow_env: Database) -> None:
    result = run_generate(GenerateParams(limit=2, dry_run=True))
    assert (result.dry_run, result.prompts, result.total) == (True, 2, 3)
    with flow_env.session(write=False) as session:
        assert {p.status for p in session.scalars(select(Prompt))} == {PromptStatus.PENDING}
        assert session.scalars(select(Article)).all() == []


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConfigError("`top_p` must be at most 1"), False),  # the user's to fix: fail at once
        (ModelError("cannot load model 'gpt2'"), False),
        (DatabaseError("database is locked"), True),  # transient: try again
        (ConnectionError("reset by peer"), True),
    ],
)
def test_retries_are_for_transient_failures_only(error: Exception, retried: bool) -> None:
    from prefect.states import Failed

    from articlegen.flows.steps import _transient

    assert _transient(None, None, Failed(data=error)) is retried


def test_a_model_that_cannot_load_fails_the_run_before_it_claims(flow_env: Database) -> None:
    from articlegen.core.errors import ModelError

    with pytest.raises(ModelError, match="model directory /nonexistent/model does not exist"):
        run_generate(GenerateParams(model="/nonexistent/model", limit=4, batch_size=2))
    with flow_env.session(write=False) as session:
        jobs = session.scalars(select(Job)).all()
        statuses = {p.status for p in session.scalars(select(Prompt))}
        attempts = sorted(p.attempts for p in session.scalars(select(Prompt)))
    assert jobs == []  # refused before its job row, as the CLI refuses it
    assert statuses == {PromptStatus.PENDING}  # nothing stuck in `claimed`
    # The model is loaded before anything is claimed: no prompt spent an attempt on a typo.
    assert attempts == [0] * 12


def test_a_run_whose_job_is_open_fails_its_job_when_the_model_cannot_load(
    flow_env: Database,
) -> None:
    # The CLI opens the job before the flow starts (`generate`, `jobs resume`): a check that
    # fails in the flow then closes that job as failed, with the reason, and claims nothing.
    params = GenerateParams(model="/nonexistent/model", limit=4, batch_size=2)
    job_id = open_job(load_settings(), params)
    with pytest.raises(ModelError, match="model directory /nonexistent/model does not exist"):
        run_generate(params, job_id)
    with flow_env.session(write=False) as session:
        job = session.get_one(Job, job_id)
        prompts = list(session.scalars(select(Prompt)))
    assert job.status is JobStatus.FAILED
    assert (job.error or "").startswith("ModelError: model directory /nonexistent/model")
    assert {(p.status, p.attempts) for p in prompts} == {(PromptStatus.PENDING, 0)}


def test_a_dry_run_job_is_finished(flow_env: Database) -> None:
    result = run_generate(GenerateParams(dry_run=True))
    with flow_env.session(write=False) as session:
        job = session.get_one(Job, result.job)
    assert job.status is JobStatus.COMPLETED
    assert job.parameters["dry_run"] is True


def test_ctrl_c_cancels_the_run_and_releases_its_prompts(
    prefect_server: None, flow_env: Database, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """SIGINT to a real `articlegen generate` while it writes batches."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": sqlite_url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    script = Path(sys.executable).parent / "articlegen"
    # A terminal delivers Ctrl-C to a process whose SIGINT is at its default; a background job
    # (CI may run as one) inherits it ignored, and Python would never see the interrupt.
    run = subprocess.Popen(
        [str(script), "generate", "--batch-size", "1", "--max-new-tokens", "400"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the first batch is written
            with flow_env.session(write=False) as session:
                if session.scalars(select(Article)).first() is not None:
                    break
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode != 0, output
    with flow_env.session(write=False) as session:
        job = session.scalars(select(Job)).one()
        statuses = [p.status for p in session.scalars(select(Prompt))]
        articles = len(session.scalars(select(Article)).all())
    assert job.status is JobStatus.CANCELLED, (job.status, output)
    assert job.error == "interrupted (Ctrl-C)"  # not Python's empty `KeyboardInterrupt: `
    assert PromptStatus.CLAIMED not in statuses  # nothing stuck
    assert 1 <= articles < 16
    assert statuses.count(PromptStatus.DONE) >= 1  # what was written stays written


CHAT_CSV = """external_id,topic,preset,prompt_format,system,prompt
own,Night trains,chatty,,Row system.,
preset,Sourdough,chatty,,,
setting,Tea,,,,
column,Lisbon,,,,Describe Lisbon's trams.
plain,Coffee,,plain,,
"""


def test_a_run_on_an_instruct_model_stores_the_chat_text(
    prefect_server: None,
    sqlite_url: str,
    chat_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    presets = tmp_path / "presets.toml"
    presets.write_text('[chatty]\nsystem = "Preset system."\ndo_sample = false\n', "utf-8")
    for name, value in {
        "DATABASE_URL": sqlite_url,
        "MODEL": str(chat_model_dir),
        "DEVICE": "cpu",
        "PRESETS_FILE": str(presets),
        "SYSTEM_MESSAGE": "Setting system.",
    }.items():
        monkeypatch.setenv(f"ARTICLEGEN_{name}", value)
    path = tmp_path / "prompts.csv"
    path.write_text(CHAT_CSV, encoding="utf-8")
    db = Database.open(sqlite_url)
    try:
        assert import_prompts_csv(db, path, load_presets(presets)).inserted == 5
        result = run_generate(GenerateParams(batch_size=4, overrides={"max_new_tokens": 6}))
        assert (result.total, result.done, result.failed) == (5, 4, 1)
        with db.session(write=False) as session:
            articles = {a.prompt.external_id or "": a for a in session.scalars(select(Article))}
            failed = session.scalars(select(Prompt).where(Prompt.external_id == "plain")).one()
    finally:
        db.close()
        close_contexts()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)

    def chat(system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert isinstance(text, str)
        return text

    def asked(topic: str) -> str:  # the bundled prompt template's request, in chat form
        return (
            f'Write an article titled "{topic}". Reply with the article\'s text only, in '
            "plain paragraphs: no title, no headings, no preamble.\n"
        )

    # The system message from the row, else its preset, else the setting.
    expected = {
        "own": chat("Row system.", asked("Night trains")),
        "preset": chat("Preset system.", asked("Sourdough")),
        "setting": chat("Setting system.", asked("Tea")),
        "column": chat("Setting system.", "Describe Lisbon's trams."),
    }
    assert {k: a.prompt_text for k, a in articles.items()} == expected
    for key, article in articles.items():
        assert article.prompt_format == "chat"
        ids = tokenizer(expected[key], add_special_tokens=False)["input_ids"]
        assert article.prompt_tokens == len(ids)  # one BOS, the template's
    # A row that asks for the plain form meets the setting's system message: it fails, and
    # says where each came from.
    assert failed.status is PromptStatus.FAILED
    assert failed.last_error == (
        "`system` is set but `prompt_format` is `plain`, which has no system message: set "
        "`prompt_format` to `chat` or `auto` (for an instruct model), or drop `system` "
        "(`system` from ARTICLEGEN_SYSTEM_MESSAGE)"
    )
