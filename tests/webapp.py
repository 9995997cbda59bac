"""What the workspace tests share: articles made without a model, accounts, a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from articlegen.core.settings import Settings
from articlegen.db import Database
from articlegen.db.articles import ArticleRow
from articlegen.db.models import Article, Prompt, ReviewerRole
from articlegen.review.accounts import add_account
from articlegen.web import create_app

XSS = '<script>document.body.dataset.pwned = "1"</script><img src=x onerror="alert(1)">'
JS_URL = "javascript:alert(document.cookie)"


def article_row(prompt_id: int, index: int, **changes: Any) -> ArticleRow:
    """An article as write-back would store it, with measures that vary by `index`."""
    flags = (
        ["too_short"] if index % 3 == 0 else (["degenerate", "truncated"] if index % 3 == 1 else [])
    )
    values: dict[str, Any] = {
        "prompt_id": prompt_id,
        "variant": 1,
        "version": 1,
        "raw_text": f"raw {index}",
        "title": f"Title {index}",
        "body": f"Body of article {index}, about trains.\n\nIts second paragraph {index}.",
        "rendered": {"markdown": f"# Title {index}", "html": f"<p>Article {index}</p>"},
        "seed": index,
        "decoding": {"top_p": 0.95},
        "model_name": "models/tiny" if index % 2 else "gpt2",
        "model_revision": "sha256:abc",
        "template_name": "article",
        "template_version": "v1",
        "prompt_tokens": 5,
        "tokens_generated": 20 + index,
        "generation_seconds": 0.1,
        "timings": {},
        "finish_reason": "eos",
        "metrics": {"perplexity": 100.0 + index, "word_count": 10 + index, "flags": flags},
        "preset": "precise" if index % 2 else "nucleus",
    }
    return ArticleRow(**{**values, **changes})


def seed(
    db: Database, n: int, topic: str = "Topic {i}", tags: Sequence[str] = ("rail",)
) -> list[int]:
    """`n` more prompts with one article each; returns the articles' ids, oldest first."""
    with db.session() as session:
        start = session.scalar(select(func.count()).select_from(Prompt)) or 0
        prompts = [
            Prompt(
                content_key=f"{i:064d}",
                topic=topic.format(i=i),
                external_id=f"ext-{i}",
                tags=list(tags),
                extra={"audience": f"readers {i}"},
            )
            for i in range(start, start + n)
        ]
        session.add_all(prompts)
        session.flush()
        rows = [article_row(p.id, start + i).values(None) for i, p in enumerate(prompts)]
        for row in rows:
            del row["job_id"]
        ids = session.scalars(insert(Article).returning(Article.id), rows).all()
        return list(ids)


def account(db: Database, name: str, role: ReviewerRole = ReviewerRole.EDITOR) -> str:
    """A reviewer account; returns its password."""
    with db.session() as session:
        _, password = add_account(session, name, role)
    return password


def workspace(database_url: str, cache_dir: Path) -> TestClient:
    """The workspace app over `database_url`, as a browser-like client (no session yet)."""
    settings = Settings(database_url=database_url, cache_dir=cache_dir)
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, html[:2000]
    return match.group(1)


def login(client: TestClient, name: str, password: str) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    done = client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return token(client.get("/articles").text)


def flashes(html: str) -> list[str]:
    """The messages a page shows at its top."""
    return re.findall(r'<p class="flash[^"]*" role="[a-z]+">([^<]*)</p>', html)
