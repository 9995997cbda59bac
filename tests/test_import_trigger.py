"""New prompts start a run: an import's Prefect event, and `articlegen serve`'s trigger on it.

Against real things: the session's Prefect server (its trigger and action services run, as in
`prefect server start`), `articlegen` as a user runs it, and real databases read back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from click.testing import CliRunner
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.automations import Automation
from prefect.events.schemas.events import ReceivedEvent
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL
from sqlalchemy import make_url, select

from articlegen.cli import cli
from articlegen.db import Database, Prompt, PromptStatus
from articlegen.flows.import_prompts import import_prompts
from articlegen.importing import PROMPTS_IMPORTED, database_identity, resource_id
from articlegen.runs import close_contexts

from .test_deployments import _serve, _stop, _wait_for_deployments
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

# Each row writes 6 tokens, so the run the trigger starts is quick on a CPU.
FIRST = "external_id,topic,max_new_tokens\na1,Night trains,6\na2,Sourdough,6\n"
SECOND = "external_id,topic,max_new_tokens\nb1,Heat pumps,6\n"


def _api_env(database_url: str) -> dict[str, str]:
    return {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": database_url,
    }


def _import(path: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["import", str(path), *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _events(resource: str, expected: int, seconds: float = 30) -> list[ReceivedEvent]:
    """The import events of `resource` on the session's server, oldest first, once there are
    `expected` of them (the server stores events a moment after it takes them)."""
    query = EventFilter(
        event=EventNameFilter(name=[PROMPTS_IMPORTED]),
        resource=EventResourceFilter(id=[resource]),
    )
    deadline = time.monotonic() + seconds
    while True:
        with get_client(sync_client=True) as client:
            events = client.read_events(filter=query, limit=50).events
        if len(events) >= expected or time.monotonic() > deadline:
            return sorted(events, key=lambda e: e.occurred)
        time.sleep(0.5)


def test_database_identity_drops_credentials_and_query() -> None:
    url = "postgresql://maria:s3cret@db.example:5432/articles?sslpassword=k3y&timeout=5"
    assert database_identity(url) == "postgresql://db.example:5432/articles"
    assert resource_id(url) == "articlegen.prompts.postgresql://db.example:5432/articles"
    # The default port is written out: both spellings of one database match one trigger.
    assert database_identity("postgresql+psycopg://maria@db.example/articles") == (
        "postgresql://db.example:5432/articles"
    )
    here = Path("articlegen.db").resolve().as_posix()
    assert database_identity("sqlite:///articlegen.db") == f"sqlite:{here}"
    assert database_identity("sqlite://") == "sqlite:memory"


def test_an_import_that_writes_prompts_announces_them(
    prefect_server: None,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    # The URL carries a password (PostgreSQL's own, or one its trust login ignores); the event
    # names the database without it.
    parsed = make_url(database_url)
    secret = parsed.password or "s3cret-pw"
    if parsed.get_backend_name() == "postgresql":
        database_url = parsed.set(password=secret).render_as_string(hide_password=False)
    source = tmp_path / "first.csv"
    source.write_text(FIRST, encoding="utf-8")
    env = _api_env(database_url)
    _import(source, env)
    source.write_text(FIRST.replace("Sourdough", "Sourdough starters"), encoding="utf-8")
    _import(source, env)

    resource = resource_id(database_url)
    events = _events(resource, expected=2)
    assert [e.payload for e in events] == [
        {"file": str(source.resolve()), "inserted": 2, "updated": 0, "pending": 2},
        {"file": str(source.resolve()), "inserted": 0, "updated": 1, "pending": 2},
    ]
    assert events[0].resource.root == {
        "prefect.resource.id": resource,
        "prefect.resource.name": "articlegen prompts",
    }
    assert resource == f"articlegen.prompts.{database_identity(parsed)}"
    assert secret not in json.dumps([e.model_dump(mode="json") for e in events])
    close_contexts()


def test_dry_runs_and_imports_that_change_nothing_announce_nothing(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    source = tmp_path / "first.csv"
    source.write_text(FIRST, encoding="utf-8")
    env = _api_env(sqlite_url)
    assert "Dry run: nothing was written." in _import(source, env, "--dry-run")
    _import(source, env)
    assert "0 inserted, 0 updated, 2 unchanged" in _import(source, env)
    # The one real import's event arrives; had the others sent any, they would be stored too.
    events = _events(resource_id(sqlite_url), expected=1)
    time.sleep(2)
    events = _events(resource_id(sqlite_url), expected=1)
    assert [e.payload["inserted"] for e in events] == [2]
    close_contexts()


def test_the_import_flow_announces_each_file_from_its_run(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARTICLEGEN_DATABASE_URL", sqlite_url)
    # The flow sends through Prefect's process-wide events worker. An earlier test's flow run
    # may have started it against that test's temporary server, now gone: start afresh, so it
    # talks to this session's server (a real process has one server and never meets this).
    EventsWorker.drain_all(timeout=5)
    EventsWorker.reset_instances_for_fork()
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(FIRST, encoding="utf-8")
    (drop / "b.csv").write_text(SECOND, encoding="utf-8")
    (drop / "c.csv").write_text(FIRST, encoding="utf-8")  # nothing new: no event
    import_prompts(str(drop), dry_run=True)
    import_prompts(str(drop))
    close_contexts()
    events = _events(resource_id(sqlite_url), expected=2)
    time.sleep(2)
    events = _events(resource_id(sqlite_url), expected=2)
    assert [(Path(e.payload["file"]).name, e.payload["pending"]) for e in events] == [
        ("a.csv", 2),
        ("b.csv", 3),
    ]
    # Sent from inside the flow run, so the UI links the event to it.
    assert {"flow-run", "task-run", "flow"} <= {r.role for r in events[0].related}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down_costs_one_warning_not_the_import(
    sqlite_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "first.csv"
    source.write_text(FIRST, encoding="utf-8")
    api = f"http://127.0.0.1:{_closed_port()}/api"
    script = Path(sys.executable).parent / "articlegen"
    env = {**os.environ, "PREFECT_API_URL": api, "ARTICLEGEN_DATABASE_URL": sqlite_url}
    done = subprocess.run(
        [str(script), "import", str(source)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("2 inserted, 0 updated, 0 unchanged, 0 rejected.\n")
    port = api.split(":")[2].split("/")[0]
    assert done.stderr == (
        f"Warning: the prompts are imported, but the Prefect server at {api} did not get the "
        f"articlegen.prompts.imported event ([Errno 111] Connect call failed ('127.0.0.1', "
        f"{port})), so no run starts now; a scheduled run will take them, or start one with "
        "`articlegen generate`\n"
    )
    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        assert len(session.scalars(select(Prompt)).all()) == 2
    db.close()


def test_without_a_prefect_server_import_never_loads_prefect(
    sqlite_url: str, tmp_path: Path
) -> None:
    """No API URL anywhere: no event, no temporary server, not even Prefect's import."""
    source = tmp_path / "first.csv"
    source.write_text(FIRST, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "ARTICLEGEN_DATABASE_URL": sqlite_url}
    code = (
        "import sys\nfrom articlegen.cli import cli\n"
        f"cli(['import', {str(source)!r}], standalone_mode=False)\n"
        "print('prefect loaded:', 'prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "prefect loaded: False"
    assert done.stderr == ""


def _flow_runs(deployment_id: UUID) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _automations(deployment_id: UUID, seconds: float = 30) -> list[Automation]:
    """The deployment's automations, once it has any: `serve` creates them after the
    deployment itself, so a deployment can be seen a moment before its trigger."""
    deadline = time.monotonic() + seconds
    while True:
        with get_client(sync_client=True) as client:
            found = client.read_resource_related_automations(f"prefect.deployment.{deployment_id}")
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _polled_since(deployment_id: UUID, moment: datetime) -> bool:
    with get_client(sync_client=True) as client:
        polled = client.read_deployment(deployment_id).last_polled
    return polled is not None and polled > moment


def test_imports_start_one_generate_run_through_serve(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        **_api_env(sqlite_url),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
        "ARTICLEGEN_SCHEDULE": "0 0 1 1 *",  # not during the test: the trigger starts the run
        "ARTICLEGEN_TRIGGER_SECONDS": "10",
    }
    server = _serve(env)
    try:
        deployment = _wait_for_deployments({"generate-articles/articlegen"})[
            "generate-articles/articlegen"
        ]
        automations = _automations(deployment.id)
        assert [a.name for a in automations] == ["articlegen-new-prompts"]
        trigger = automations[0].trigger
        assert trigger.model_dump(include={"expect", "match", "threshold", "within"}) == {
            "expect": {PROMPTS_IMPORTED},
            "match": {"prefect.resource.id": resource_id(sqlite_url)},
            "threshold": 1,
            "within": timedelta(seconds=10),
        }

        # Two imports in a row: one run, a trigger's wait later, takes both files' prompts.
        first, second = tmp_path / "first.csv", tmp_path / "second.csv"
        first.write_text(FIRST, encoding="utf-8")
        second.write_text(SECOND, encoding="utf-8")
        _import(first, env)
        _import(second, env)
        deadline = time.monotonic() + 120
        runs = _flow_runs(deployment.id)
        while not (runs and all(r.state and r.state.is_final() for r in runs)):
            assert time.monotonic() < deadline, f"no finished run: {runs}"
            time.sleep(1)
            runs = _flow_runs(deployment.id)
    finally:
        output = _stop(server)
    assert (
        f"generate-articles also runs 10 s after prompts are imported into "
        f"{database_identity(sqlite_url)}; imports in between join that run." in output
    )
    assert len(runs) == 1, [(r.name, r.created_by) for r in runs]
    (run,) = runs
    assert run.state is not None
    assert run.state.is_completed(), run.state
    assert run.created_by is not None
    assert (run.created_by.type, run.created_by.display_value) == (
        "AUTOMATION",
        "articlegen-new-prompts",
    )
    assert run.parameters == {}  # the deployment's defaults: every pending prompt
    db = Database.open(sqlite_url)
    with db.session(write=False) as session:
        statuses = {p.external_id: p.status for p in session.scalars(select(Prompt))}
    db.close()
    assert statuses == dict.fromkeys(["a1", "a2", "b1"], PromptStatus.DONE)

    # Served again with --no-trigger: the deployment's trigger is gone from the server. Once
    # the runner polls, `serve` is up and handles SIGTERM (before, the signal kills it).
    restarted = datetime.now(UTC)
    server = _serve(env, "--no-trigger")
    try:
        deadline = time.monotonic() + 60
        while _automations(deployment.id, seconds=0) or not _polled_since(deployment.id, restarted):
            assert time.monotonic() < deadline, "the trigger outlived --no-trigger"
            time.sleep(1)
    finally:
        output = _stop(server)
    assert "imported into" not in output
