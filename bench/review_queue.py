"""The review queue's server time at scale: `python -m bench.review_queue --articles 100000`.

Fills a fresh SQLite file and a fresh PostgreSQL database with that many articles (realistic
texts and measures, a tenth of them already reviewed), then asks the workspace, in-process, for
the queue pages an editor opens most, each several times, and prints the median server time
per page against the 300 ms target. After filling, the database is analysed (and PostgreSQL's
vacuumed), as autovacuum or `PRAGMA optimize` would have done to a database that grew. The
baseline measured in the same run is the cheapest request there is, the login page: every
page's figure is also shown as a ratio of it.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import insert

from articlegen.core.settings import Settings
from articlegen.db import Database
from articlegen.db.models import Article, Prompt, ReviewerRole
from articlegen.review.accounts import add_account
from articlegen.runs import close_contexts
from articlegen.web import create_app

TARGET_MS = 300.0
# Texts drawn from a vocabulary of 5,000 made-up words by Zipf's law, as words fall in real
# prose: a few in nearly every article, most in few. Searches pick words of both kinds.
_SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gu hi jo".split()
VOCABULARY = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES][:5000]
_WEIGHTS = [1 / rank for rank in range(1, len(VOCABULARY) + 1)]
COMMON, RARER, RARE = VOCABULARY[2], VOCABULARY[150], VOCABULARY[400]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(VOCABULARY, weights=_WEIGHTS, k=n))


# What an editor opens: the queue as it starts, a status, filters, a search, sorts, a deep page.
VIEWS = [
    ("queue, pending, newest", "/articles?status=pending_review"),
    ("all, newest", "/articles"),
    ("flag filter", "/articles?flag=degenerate&status=pending_review"),
    ("model + preset", "/articles?model=gpt2&preset=precise"),
    ("tag filter", "/articles?tag=travel"),
    ("search, two words", f"/articles?q={RARER}%20{RARE}"),
    ("search, one rare word", f"/articles?q={RARE}"),
    ("search, a word in most", f"/articles?q={COMMON}"),
    ("sort by perplexity", "/articles?sort=perplexity&status=pending_review"),
    ("sort by flags", "/articles?sort=flags"),
    ("page 400", "/articles?page=400"),
    ("one article", "/articles/{middle}?status=pending_review"),
]


def _article(prompt_id: int, i: int, rng: random.Random) -> dict[str, Any]:
    body = "\n\n".join(_words(rng, rng.randint(40, 90)) + "." for _ in range(rng.randint(2, 4)))
    flags = [
        f
        for f, p in (("degenerate", 0.1), ("too_short", 0.2), ("truncated", 0.5))
        if rng.random() < p
    ]
    perplexity = rng.uniform(5, 900)
    return {
        "prompt_id": prompt_id, "variant": 1, "version": 1, "raw_text": body,
        "title": f"Article {i}: " + _words(rng, 5), "body": body,
        "rendered": {}, "seed": i, "decoding": {"top_p": 0.95},
        "model_name": rng.choice(["gpt2", "models/house-v2"]), "model_revision": "sha256:0",
        "template_name": "article", "template_version": "v", "prompt_tokens": 10,
        "tokens_generated": 120, "generation_seconds": 0.5, "timings": {}, "finish_reason": "eos",
        "metrics": {"perplexity": perplexity, "word_count": len(body.split()), "flags": flags},
        "preset": rng.choice(["nucleus", "precise", "creative"]), "perplexity": perplexity,
        "word_count": len(body.split()), "flags": flags, "flag_count": len(flags),
        "review_status": "approved" if i % 10 == 0 else "pending_review",
    }  # fmt: skip


def fill(db: Database, n: int, chunk: int = 5000) -> int:
    """`n` prompts, one article each; returns the middle article's id."""
    rng = random.Random(7)
    started = time.perf_counter()
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        with db.session() as session:
            prompts = [
                {
                    "content_key": uuid.uuid4().hex + uuid.uuid4().hex,
                    "topic": f"Topic {start + k}: " + _words(rng, 4),
                    "tags": [rng.choice(["travel", "food", "home", "work"])],
                    "decoding": {},
                    "extra": {},
                    "regenerate": [],
                    "status": "done",
                    "priority": 0,
                    "variants": 1,
                    "attempts": 1,
                }
                for k in range(count)
            ]
            ids = session.scalars(insert(Prompt).returning(Prompt.id), prompts).all()
            session.execute(
                insert(Article), [_article(p, start + k, rng) for k, p in enumerate(ids)]
            )
    # What autovacuum (PostgreSQL) and `PRAGMA optimize` (SQLite) do to a database that has
    # grown: statistics for the planner, and PostgreSQL's visibility map for index-only scans.
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE"
            )
        else:
            connection.exec_driver_sql("ANALYZE")
    click.echo(f"  filled {n:,} articles in {time.perf_counter() - started:.0f} s", err=True)
    return n // 2


def measure(url: str, n: int, repeats: int, cache: Path) -> list[tuple[str, float]]:
    """Median milliseconds per view, the login page first (the run's baseline)."""
    db = Database.open(url)
    middle = fill(db, n)
    with db.session() as session:
        _, password = add_account(session, "bench", ReviewerRole.VIEWER)
    db.close()
    client = TestClient(create_app(Settings(database_url=url, cache_dir=cache)))
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post("/login", data={"name": "bench", "password": password, "csrf_token": token})
    results = []
    for label, path in [("login page (baseline)", "/login"), *VIEWS]:
        path = path.format(middle=middle)
        client.get(path)  # warm: the first request of a view fills the database's caches
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            answer = client.get(path)
            times.append(1000 * (time.perf_counter() - started))
            assert answer.status_code == 200, (path, answer.status_code)
        results.append((label, statistics.median(times)))
    close_contexts()
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--articles", default=100_000, show_default=True, help="Articles in the database.")
@click.option("--repeats", default=7, show_default=True, help="Requests per view (median).")
@click.option(
    "--postgres",
    default=os.environ.get(
        "ARTICLEGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    show_default=True,
    help="An admin URL of a PostgreSQL server (a fresh database is made and dropped); '' skips.",
)
def main(articles: int, repeats: int, postgres: str) -> None:
    """Median server time of the review queue's pages over ARTICLES articles.

    Example: python -m bench.review_queue --articles 100000
    """
    work = Path(tempfile.mkdtemp(prefix="articlegen-bench-queue-"))
    backends = [("SQLite", f"sqlite:///{work / 'queue.db'}")]
    name = f"articlegen_bench_{uuid.uuid4().hex[:8]}"
    if postgres:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        backends.append(("PostgreSQL", f"{postgres.rsplit('/', 1)[0]}/{name}"))
    try:
        for backend, url in backends:
            click.echo(f"{backend}: {articles:,} articles, median of {repeats} requests", err=True)
            results = measure(url, articles, repeats, work / "cache")
            baseline = results[0][1]
            click.echo(
                f"\n| {backend}: view | server ms | ratio to login page | ≤ {TARGET_MS:.0f} ms |"
            )
            click.echo("| --- | ---: | ---: | --- |")
            for label, ms in results:
                verdict = "PASS" if ms <= TARGET_MS else "FAIL"
                click.echo(f"| {label} | {ms:.1f} | {ms / baseline:.1f} | {verdict} |")
            click.echo("")
    finally:
        if postgres:
            with psycopg.connect(postgres, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
