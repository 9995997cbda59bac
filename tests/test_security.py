"""A database URL's password never shows: not in output, logs, errors, artifacts or job rows.

(Template sandboxing and HTML escaping: `test_templates.py` and `test_browser.py`; formula cells:
`test_review_export.py` for exports and the `csv_formula_cell` case of `test_bad_inputs.py`.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from prefect.client.orchestration import get_client
from sqlalchemy import select

from articlegen.cli import cli
from articlegen.core.redact import redact_urls, safe_database_url
from articlegen.core.settings import Settings
from articlegen.db import Article, Database, Job, Prompt
from articlegen.runs import close_contexts

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .test_reliability import _seed

SECRET = "Tr0ub4dor-and-3"


def test_the_database_password_never_shows(
    prefect_server: None,  # noqa: F811
    postgres_url: str,
    tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The test server trusts local connections, so any password connects: the point is
    # where it travels.
    user, rest = postgres_url.removeprefix("postgresql://").split("@", 1)
    url = f"postgresql://{user}:{SECRET}@{rest}"
    _seed(url, 3)
    env = {
        "ARTICLEGEN_DATABASE_URL": url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    caplog.set_level(logging.DEBUG)
    outputs = []
    for args in (
        # An error, reported with its context (while prompts are pending: with none, generate
        # answers before it looks at the model).
        ["generate", "--model", "/no/such/model"],
        ["generate", "--batch-size", "2", "--max-new-tokens", "4"],
        ["jobs", "show", "1", "--format", "json"],
        ["articles", "list", "--format", "json"],
        ["prompts", "list", "--format", "json"],
    ):
        result = CliRunner().invoke(cli, args, env=env)
        close_contexts()
        outputs.append(result.output)
    assert outputs[0].startswith("Error: model directory /no/such/model does not exist")
    assert "Job 1 completed" in outputs[1]
    db = Database.open(url)
    with db.session(write=False) as session:
        rows = [
            json.dumps([getattr(r, c.key) for c in type(r).__table__.columns], default=str)
            for model in (Prompt, Job, Article)
            for r in session.scalars(select(model))
        ]
    db.close()
    with get_client(sync_client=True) as client:
        artifacts = [
            json.dumps(a.data, default=str) + (a.description or "")
            for a in client.read_artifacts()
            if a.key and a.key.startswith("job-1-")
        ]
    assert artifacts  # the run's summary, table and progress
    for text in [*outputs, caplog.text, *rows, *artifacts]:
        assert SECRET not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{SECRET}@db.example:5432/app", "postgresql://u:***@db.example:5432/app"),
        # An unencoded @: SQLAlchemy ends the password at the first one; all of it is hidden.
        (f"postgresql://u:{SECRET}@x@db.example/app", "postgresql://u:***@db.example/app"),
        (f"postgresql://u:{SECRET}/x?y@db.example/app", "postgresql://u:***@db.example/app"),
        (
            f"postgresql://u@h/app?password={SECRET}&sslmode=require",
            "postgresql://u@h/app?password=***&sslmode=require",
        ),
        (f"postgresql://u@h/app?sslpassword={SECRET}", "postgresql://u@h/app?sslpassword=***"),
        (f"postgresql://u:{SECRET}@h:abc/app", "<unparseable database URL>"),
        ("sqlite:///articlegen.db", "sqlite:///articlegen.db"),
    ],
)
def test_a_database_url_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert safe_database_url(url) == shown
    assert SECRET not in redact_urls(f"cannot reach {url} now")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"at postgresql://u:{SECRET}@x@h:1/db: refused", "at postgresql://***@h:1/db: refused"),
        (f"see http://u@h/x?token={SECRET}&a=1 ok", "see http://***@h/x?token=***&a=1 ok"),
        # No user part, nothing hidden: Prefect's own address stays readable.
        (
            "PREFECT_API_URL http://127.0.0.1:4200/api is down",
            "PREFECT_API_URL http://127.0.0.1:4200/api is down",
        ),
        ("write to bob@example.org", "write to bob@example.org"),
    ],
)
def test_urls_in_a_message_lose_their_secrets(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_the_settings_repr_holds_no_secret() -> None:
    settings = Settings(
        database_url=f"postgresql://u:{SECRET}@h/db", web_secret=SECRET * 3, model="gpt2"
    )
    assert SECRET not in repr(settings)
    assert "model='gpt2'" in repr(settings)  # the rest is still there to read
