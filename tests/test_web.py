"""The review workspace over HTTP, on SQLite and PostgreSQL: access rules, CSRF, accounts, the
queue's filters, reviews with their audit trail, conflicts, bulk actions, edits and diffs.

What a person clicks is tested in a real browser in `test_web_browser.py`.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy import select, update

from articlegen.core.settings import Settings
from articlegen.db import Article, ArticleReviewStatus, Database, Prompt, PromptStatus
from articlegen.db.models import (
    LoginFailure,
    ModelKind,
    ReviewAction,
    Reviewer,
    ReviewerRole,
    ReviewEvent,
    utcnow,
)
from articlegen.export import RANDOM_WEIGHTS_NOTE
from articlegen.review.accounts import try_login
from articlegen.review.diff import word_diff
from articlegen.runs import close_contexts
from articlegen.web.security import secret_key

from .conftest import row_counts
from .webapp import XSS, account, flashes, login, seed, token, workspace


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    yield database
    database.close()
    close_contexts()


@pytest.fixture
def client(database_url: str, db: Database, tmp_path: Path) -> TestClient:
    return workspace(database_url, tmp_path / "cache")


def _events(db: Database) -> list[tuple[int, str, ReviewAction]]:
    with db.session(write=False) as session:
        rows = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id))
        return [(e.article_id, e.actor, e.action) for e in rows]


def _status(db: Database, article_id: int) -> ArticleReviewStatus:
    with db.session(write=False) as session:
        return session.get_one(Article, article_id).review_status


# --- access -----------------------------------------------------------------------------------


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route the app serves (its included routers' too), with ids filled in."""
    found = []
    routes = list(client.app.routes)  # type: ignore[attr-defined]
    while routes:
        route = routes.pop()
        routes += getattr(getattr(route, "original_router", None), "routes", [])
        if isinstance(route, APIRoute) and route.path not in ("/login",):
            path = re.sub(r"\{[a-z_]+\}", "1", route.path)
            found += [(method, path) for method in sorted(route.methods or ())]
    return found


def test_every_route_needs_a_session(client: TestClient, db: Database) -> None:
    seed(db, 2)
    routes = _routes(client)
    assert len(routes) >= 12  # every page and action of the workspace, found in the app
    for method, path in routes:
        answer = client.request(method, path, follow_redirects=False)
        if method == "GET" and not path.endswith(".json"):
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].startswith("/login?next=%2F"), path
        else:
            assert answer.status_code == 401, (method, path, answer.text[:200])
    assert _events(db) == []


def test_the_session_cookie_is_httponly_and_samesite_and_logout_ends_it(
    client: TestClient, db: Database
) -> None:
    password = account(db, "maria")
    page = client.get("/login")
    done = client.post(
        "/login",
        data={"name": "maria", "password": password, "csrf_token": token(page.text)},
        follow_redirects=False,
    )
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    stolen = client.cookies.get("articlegen_session")
    csrf = token(client.get("/articles").text)
    assert (
        client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    )
    # The same cookie, replayed after the logout, opens nothing.
    replay = TestClient(client.app, base_url="http://127.0.0.1")
    replay.cookies.set("articlegen_session", stolen or "")
    assert replay.get("/articles", follow_redirects=False).status_code == 303


def test_passwords_are_hashed_shown_once_and_never_logged(
    run_cli: object, db: Database, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    runner = run_cli  # the CLI bound to this test's database
    added = runner("reviewers", "add", "ana", "--role", "viewer")  # type: ignore[operator]
    assert added.exit_code == 0
    password = re.search(r"keep it safe\): (\S+)$", added.stdout.strip()).group(1)  # type: ignore[union-attr]
    assert len(password) >= 16
    with db.session(write=False) as session:
        stored = session.scalars(select(Reviewer)).one()
    assert stored.password_hash.startswith("$argon2")
    assert password not in stored.password_hash
    listed = runner("reviewers", "list", "--format", "json")  # type: ignore[operator]
    assert "ana" in listed.stdout
    assert password not in listed.stdout
    assert password not in runner("reviewers", "list").stdout  # type: ignore[operator]
    again = runner("reviewers", "add", "ana")  # type: ignore[operator]
    assert again.exit_code == 1
    assert again.stderr == "Error: there is already a reviewer called 'ana': choose another name\n"
    with caplog.at_level(logging.DEBUG):
        login(client, "ana", password)
    assert password not in caplog.text


def test_failed_logins_slow_down(client: TestClient, db: Database) -> None:
    password = account(db, "maria")
    csrf = token(client.get("/login").text)

    def attempt(secret: str) -> int:
        data = {"name": "maria", "password": secret, "csrf_token": csrf}
        return client.post("/login", data=data, follow_redirects=False).status_code

    def just_failed() -> None:
        # The first wait is 1 s from the last failure, and each refusal takes 0.5 s before it
        # answers: on a loaded machine the next request could come after the wait. The streaks
        # are dated now, so what is checked is the refusal inside the wait, not the clock.
        with db.session() as session:
            session.execute(update(LoginFailure).values(last_failed_at=utcnow()))

    assert [attempt("wrong") for _ in range(3)] == [401, 401, 401]
    just_failed()
    blocked = client.post(
        "/login", data={"name": "maria", "password": password, "csrf_token": csrf}
    )
    assert blocked.status_code == 429  # even the right password must wait now
    assert "too many failed logins in a row: wait" in blocked.text
    assert int(blocked.headers["retry-after"]) >= 1
    # A name no account has answers exactly as one that exists: nothing tells them apart.
    nobody = {"name": "nobody", "password": "x", "csrf_token": csrf}
    unknown = [client.post("/login", data=nobody) for _ in range(3)]
    just_failed()
    unknown.append(client.post("/login", data=nobody))
    assert [u.status_code for u in unknown] == [401, 401, 401, 429]
    assert "wrong name or password" in unknown[0].text
    assert "too many failed logins in a row: wait" in unknown[3].text
    with db.session() as session:  # the wait is over, after very many failures
        long_ago = utcnow().replace(year=2000)
        session.execute(update(LoginFailure).values(failures=10_000, last_failed_at=long_ago))
    with db.session(write=False) as session:  # one streak per name and client
        assert len(session.scalars(select(LoginFailure)).all()) == 2
    assert attempt(password) == 303
    with db.session(write=False) as session:  # a good login forgets its name's failures
        assert len(session.scalars(select(LoginFailure)).all()) == 1


def test_a_post_without_its_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    ids = seed(db, 3)
    login(client, "editor", account(db, "editor"))
    before = row_counts(db)
    for path, data in [
        (f"/articles/{ids[0]}/approve", {"version": "1"}),
        (f"/articles/{ids[0]}/reject", {"version": "1", "reason": "bad"}),
        (f"/articles/{ids[0]}/edit", {"version": "1", "title": "T", "body": "B"}),
        (f"/articles/{ids[0]}/regenerate", {}),
        ("/articles/bulk", {"do": "approve-all", "confirmed": "yes", "expected": "3"}),
        ("/logout", {}),
    ]:
        for forged in ({}, {"csrf_token": "forged"}):
            answer = client.post(path, data={**data, **forged}, follow_redirects=False)
            assert answer.status_code == 403, (path, forged)
            assert "missing its security token" in answer.text
    assert row_counts(db) == before
    assert {_status(db, i) for i in ids} == {ArticleReviewStatus.PENDING_REVIEW}
    assert _events(db) == []


def test_a_viewer_reads_but_cannot_act(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "viv", account(db, "viv", ReviewerRole.VIEWER))
    page = client.get(f"/articles/{article_id}")
    assert page.status_code == 200
    assert 'action="/articles/' not in page.text  # no action forms for a viewer
    for path, data in [
        (f"/articles/{article_id}/approve", {"version": "1"}),
        (f"/articles/{article_id}/reject", {"version": "1", "reason": "no"}),
        (f"/articles/{article_id}/edit", {"version": "1", "title": "T", "body": "B"}),
        (f"/articles/{article_id}/regenerate", {"preset": "precise"}),
        ("/articles/bulk", {"do": "approve-selected", "ids": str(article_id)}),
        ("/articles/bulk", {"do": "approve-all", "confirmed": "yes", "expected": "1"}),
    ]:
        answer = client.post(path, data={**data, "csrf_token": csrf}, follow_redirects=False)
        assert answer.status_code == 403
        assert "viv is a viewer: only editors may do that." in answer.text
    assert client.get(f"/articles/{article_id}/edit").status_code == 403
    assert _status(db, article_id) is ArticleReviewStatus.PENDING_REVIEW
    assert _events(db) == []


# --- the queue --------------------------------------------------------------------------------


def _shown(client: TestClient, query: str) -> list[int]:
    page = client.get(f"/articles?{query}")
    assert page.status_code == 200, page.text[:500]
    return [int(i) for i in re.findall(r'name="ids" value="(\d+):\d+"', page.text)]


def test_filters_search_sorts_and_counts(client: TestClient, db: Database) -> None:
    ids = seed(db, 12, topic="Topic {i} about ferries")
    with db.session() as session:
        session.execute(update(Prompt).where(Prompt.external_id == "ext-4").values(tags=["sea"]))
        session.execute(
            update(Article)
            .where(Article.id == ids[5])
            .values(body="A text about the SEA_LEVEL, 100% tidal.", job_id=None)
        )
        session.execute(
            update(Article)
            .where(Article.id.in_(ids[:2]))
            .values(review_status=ArticleReviewStatus.APPROVED)
        )
    login(client, "ed", account(db, "ed"))
    assert _shown(client, "") == ids[::-1]  # newest first
    assert _shown(client, "sort=oldest") == ids
    assert _shown(client, "status=approved") == ids[1::-1]
    assert _shown(client, "flag=too_short") == [ids[i] for i in (9, 6, 3, 0)]
    assert _shown(client, "flag=degenerate&status=pending_review") == [ids[i] for i in (10, 7, 4)]
    assert _shown(client, "model=gpt2&preset=nucleus") == [ids[i] for i in (10, 8, 6, 4, 2, 0)]
    assert _shown(client, "tag=sea") == [ids[4]]
    assert _shown(client, "prompt=ext-7") == [ids[7]]
    with db.session(write=False) as session:
        prompt_id = session.get_one(Article, ids[3]).prompt_id
    assert _shown(client, f"prompt={prompt_id}") == [ids[3]]
    # Search by words, in any case, each also the start of a longer word, in the title and text
    # or in the topic; `_` and `%` separate words, a search of no words finds nothing.
    assert _shown(client, "q=sea_level") == [ids[5]]
    assert _shown(client, "q=100%25") == [ids[5]]
    assert _shown(client, "q=TITLE%2011") == [ids[11]]
    assert len(_shown(client, "q=FERRIES")) == 12
    assert _shown(client, "q=%25%25") == []
    assert _shown(client, "sort=perplexity")[:3] == [ids[11], ids[10], ids[9]]
    assert _shown(client, "sort=words")[:2] == [ids[0], ids[1]]
    assert set(_shown(client, "sort=flags")[:4]) == {ids[i] for i in (1, 4, 7, 10)}
    page = client.get("/articles?flag=truncated").text
    assert re.search(r"Pending review <span class=\"n\">3</span>", page)
    assert re.search(r"Approved <span class=\"n\">1</span>", page)


def test_the_queue_pages_by_fifty_and_refuses_bad_filters(client: TestClient, db: Database) -> None:
    ids = seed(db, 120)
    login(client, "ed", account(db, "ed"))
    assert _shown(client, "") == ids[::-1][:50]
    assert _shown(client, "page=3") == ids[::-1][100:]
    assert "page 3 of 3" in client.get("/articles?page=3").text
    for query, status, message in [
        ("job=abc", 400, "`job`: input should be a valid integer"),
        ("job=99999999999", 400, "`job`: input should be less than or equal to 2147483647"),
        ("status=lost", 400, "`status`: input should be"),
        ("sort=random", 400, "`sort`: input should be"),
        ("bogus=1", 200, None),  # fields the queue does not know are ignored
        ("page=0", 400, "greater than or equal to 1"),
    ]:
        answer = client.get(f"/articles?{query}")
        assert answer.status_code == status, query
        if message:
            assert message in answer.text.replace("&#39;", "'").replace("&#96;", "`"), query
    assert client.get("/articles/99999999999").status_code == 404
    assert client.get("/articles/0").status_code == 404
    missing = client.get(f"/articles/{ids[-1] + 1000}")
    assert missing.status_code == 404
    assert f"no article {ids[-1] + 1000}" in missing.text


def test_next_and_previous_follow_the_filtered_queue(client: TestClient, db: Database) -> None:
    ids = seed(db, 9)
    login(client, "ed", account(db, "ed"))
    page = client.get(f"/articles/{ids[4]}?flag=too_short&sort=oldest").text
    # too_short: articles 0, 3, 6 (oldest first): 4 is not among them, so no neighbours.
    assert 'rel="next"' not in page
    assert 'rel="prev"' not in page
    page = client.get(f"/articles/{ids[3]}?flag=too_short&sort=oldest").text
    assert f'href="/articles/{ids[6]}?flag=too_short&amp;sort=oldest" rel="next"' in page
    assert f'href="/articles/{ids[0]}?flag=too_short&amp;sort=oldest" rel="prev"' in page
    page = client.get(f"/articles/{ids[8]}?sort=perplexity").text
    assert 'rel="prev"' not in page  # the highest perplexity comes first
    assert f'href="/articles/{ids[7]}?sort=perplexity" rel="next"' in page


# --- reviewing --------------------------------------------------------------------------------


def test_approve_moves_on_and_a_stale_form_is_told_who_acted(
    client: TestClient, db: Database, tmp_path: Path, database_url: str
) -> None:
    ids = seed(db, 3)
    mine = login(client, "maria", account(db, "maria"))
    other = workspace(database_url, tmp_path / "cache")
    theirs = login(other, "tom", account(db, "tom"))
    # Both open article 1 (version 1); Tom approves first.
    done = other.post(
        f"/articles/{ids[1]}/approve",
        data={
            "csrf_token": theirs,
            "version": "1",
            "note": "fine",
            "queue": "status=pending_review",
        },
        follow_redirects=False,
    )
    assert done.headers["location"] == f"/articles/{ids[0]}?status=pending_review"  # the next
    late = client.post(
        f"/articles/{ids[1]}/reject",
        data={"csrf_token": mine, "version": "1", "reason": "off topic"},
    )
    (message,) = flashes(late.text)
    assert message.startswith(f"article {ids[1]} changed since you opened it: tom approved it at ")
    assert message.endswith("UTC. Reload it to see the change; nothing of yours was saved")
    with db.session(write=False) as session:
        article = session.get_one(Article, ids[1])
        assert (article.review_status, article.reviewer_note, article.reviewed_by) == (
            ArticleReviewStatus.APPROVED, "fine", "tom")  # fmt: skip
        assert article.lock_version == 2
    assert _events(db) == [(ids[1], "tom", ReviewAction.APPROVE)]


def test_reject_needs_a_reason(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    page = client.post(
        f"/articles/{article_id}/reject", data={"csrf_token": csrf, "version": "1", "reason": "  "}
    )
    assert flashes(page.text) == ["a rejection needs a reason: say what is wrong, for the record"]
    assert _status(db, article_id) is ArticleReviewStatus.PENDING_REVIEW
    assert _events(db) == []


def test_edit_then_approve_keeps_both_texts_and_exports_the_editors(
    client: TestClient, db: Database, run_cli: object, tmp_path: Path
) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    form = client.get(f"/articles/{article_id}/edit").text
    assert "Body of article 0, about trains." in form
    saved = client.post(
        f"/articles/{article_id}/edit",
        data={"csrf_token": csrf, "version": "1", "title": "Trains at <night>",
              "body": "Night trains are back.\r\n\r\nThey are slow, on purpose."},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    with db.session(write=False) as session:
        article = session.get_one(Article, article_id)
        assert article.body == "Body of article 0, about trains.\n\nIts second paragraph 0."
        assert article.edited_body == "Night trains are back.\n\nThey are slow, on purpose."
        assert (article.edited_title, article.edited_by) == ("Trains at <night>", "ed")
        assert article.review_status is ArticleReviewStatus.APPROVED
        assert article.edited_rendered is not None
        assert "&lt;night&gt;" in article.edited_rendered["html"]
        assert article.edited_rendered["markdown"].startswith("# Trains at &lt;night&gt;\n")
    assert _events(db) == [(article_id, "ed", ReviewAction.EDIT)]
    diff = client.get(f"/articles/{article_id}/diff").text
    assert "<ins>Night trains are back.</ins>" in diff or "<ins>Night" in diff
    assert "Generated (version 1)" in diff
    assert "Edited by ed" in diff
    out = tmp_path / "approved.csv"
    assert run_cli("export", "--format", "csv", "--out", str(out)).exit_code == 0  # type: ignore[operator]
    exported = out.read_text(encoding="utf-8")
    assert "Night trains are back." in exported
    assert "about trains" not in exported


def _digest(page: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert found is not None, page[:2000]
    return found.group(1)


def test_bulk_on_every_matching_article_confirms_the_count(
    client: TestClient, db: Database
) -> None:
    ids = seed(db, 9)
    csrf = login(client, "ed", account(db, "ed"))
    ask = client.post(
        "/articles/bulk", data={"csrf_token": csrf, "flag": "too_short", "do": "approve-all"}
    )
    assert "<h1>Approve 3 article(s)?</h1>" in ask.text
    assert _events(db) == []  # asking writes nothing
    seed_more = seed(db, 1, topic="Late {i}")  # a fourth too_short article arrives meanwhile
    stale = client.post(
        "/articles/bulk",
        data={"csrf_token": csrf, "flag": "too_short", "do": "approve-all", "expected": "3",
              "digest": _digest(ask.text), "confirmed": "yes"},
    )  # fmt: skip
    assert flashes(stale.text) == [
        "the filter now holds 4 articles, not the 3 you confirmed (or not the same ones): check "
        "the list and confirm again; nothing was changed"
    ]
    assert _events(db) == []
    again = client.post(
        "/articles/bulk",
        data={"csrf_token": csrf, "flag": "too_short", "do": "approve-all", "note": "batch ok"},
    )
    assert "<h1>Approve 4 article(s)?</h1>" in again.text
    done = client.post(
        "/articles/bulk",
        data={"csrf_token": csrf, "flag": "too_short", "do": "approve-all", "expected": "4",
              "digest": _digest(again.text), "confirmed": "yes", "note": "batch ok"},
    )  # fmt: skip
    assert flashes(done.text) == ["Approved: all 4 article(s) that matched."]
    approved = {ids[i] for i in (0, 3, 6)} | set(seed_more)
    assert {
        i for i in [*ids, *seed_more] if _status(db, i) is ArticleReviewStatus.APPROVED
    } == approved
    assert sorted(_events(db)) == sorted((i, "ed", ReviewAction.APPROVE) for i in approved)
    with db.session(write=False) as session:
        notes = {
            a.reviewer_note
            for a in session.scalars(select(Article).where(Article.id.in_(approved)))
        }
        versions = {
            a.lock_version for a in session.scalars(select(Article).where(Article.id.in_(approved)))
        }
    assert (notes, versions) == ({"batch ok"}, {2})


def test_bulk_on_selected_rows_counts_each_once(client: TestClient, db: Database) -> None:
    ids = seed(db, 4)
    csrf = login(client, "ed", account(db, "ed"))
    body = {"csrf_token": csrf, "do": "reject-selected", "note": "too long"}
    done = client.post(
        "/articles/bulk", data={**body, "ids": [str(ids[1]), str(ids[1]), str(ids[2])]}
    )
    assert flashes(done.text) == ["Rejected: 2 article(s)."]
    assert _events(db) == [(ids[1], "ed", ReviewAction.REJECT), (ids[2], "ed", ReviewAction.REJECT)]
    missing = {"csrf_token": csrf, "do": "approve-selected", "ids": [str(ids[0]), "999999"]}
    answer = client.post("/articles/bulk", data=missing)
    assert flashes(answer.text)[0].startswith("no article 999999")
    assert _status(db, ids[0]) is ArticleReviewStatus.PENDING_REVIEW  # all or none


def test_regenerate_queues_a_new_version_with_checked_settings(
    client: TestClient, db: Database
) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    bad = client.post(
        f"/articles/{article_id}/regenerate",
        data={"csrf_token": csrf, "preset": "greedy", "settings": "temprature=0.5"},
    )
    assert flashes(bad.text) == [
        "settings: `temprature`: unknown setting (did you mean `temperature`?)"
    ]
    with db.session() as session:  # as after a run: the prompt is done
        prompt = session.get_one(Article, article_id).prompt
        assert (prompt.regenerate, prompt.preset) == ([], None)  # the bad request changed nothing
        prompt.status = PromptStatus.DONE
    assert _events(db) == []
    good = client.post(
        f"/articles/{article_id}/regenerate",
        data={"csrf_token": csrf, "preset": "precise", "settings": "temperature=0.6\n\n"},
    )
    assert flashes(good.text)[0].startswith(f"Queued a new version of article {article_id}")
    with db.session(write=False) as session:
        prompt = session.get_one(Article, article_id).prompt
        assert (prompt.status, prompt.regenerate, prompt.preset) == (
            PromptStatus.PENDING, [1], "precise")  # fmt: skip
        assert prompt.decoding == {"temperature": 0.6}
        (event,) = session.scalars(select(ReviewEvent))
        assert event.details == {"preset": "precise", "settings": {"temperature": 0.6}}


def test_cli_reviews_write_the_same_audit_trail(run_cli: object, db: Database) -> None:
    ids = seed(db, 2)
    invoke = run_cli
    assert invoke("review", "approve", str(ids[0]), str(ids[0]), "--note", "ok").stdout == (  # type: ignore[operator]
        f"Approved: {ids[0]}.\n"
    )
    again = invoke("review", "approve", str(ids[0]))  # type: ignore[operator]
    assert again.exit_code == 0
    with db.session(write=False) as session:
        assert session.get_one(Article, ids[0]).reviewer_note == "ok"  # no --note: kept
    empty = invoke("review", "reject", str(ids[1]), "--reason", " ")  # type: ignore[operator]
    assert empty.exit_code == 1
    assert empty.stderr == (
        "Error: a rejection needs a reason: say what is wrong, for the record\n"
    )
    huge = invoke("review", "approve", "99999999999")  # type: ignore[operator]
    assert huge.exit_code == 1
    assert huge.stderr.startswith("Error: no article 99999999999: article ids run from 1 to")
    events = _events(db)
    assert [(a, action) for a, _, action in events] == [
        (ids[0], ReviewAction.APPROVE), (ids[0], ReviewAction.APPROVE)]  # fmt: skip
    assert {actor for _, actor, _ in events} == {events[0][1]}
    assert events[0][1]
    shown = invoke("articles", "show", str(ids[0]))  # type: ignore[operator]
    assert "History:" in shown.stdout
    assert shown.stdout.count(" approve ") == 2


def test_pages_escape_what_prompts_and_models_wrote(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1, topic="Topic " + XSS)
    with db.session() as session:
        session.execute(update(Article).values(title="T " + XSS, body="B " + XSS))
        session.execute(update(Prompt).values(extra={"note": XSS}, tags=[XSS]))
    login(client, "ed", account(db, "ed"))
    for path in ("/articles", f"/articles/{article_id}", f"/articles/{article_id}/edit"):
        page = client.get(path)
        assert "<script>document" not in page.text, path
        assert "<img src=x" not in page.text, path
        assert "&lt;script&gt;" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    framed = client.get(f"/articles/{article_id}/html")
    assert framed.headers["content-security-policy"].startswith("sandbox;")


def test_only_articles_of_random_weights_wear_the_badge(client: TestClient, db: Database) -> None:
    noise, local, old = seed(db, 3)  # `old`: written before kinds were recorded
    with db.session() as session:
        for article_id, kind in ((noise, ModelKind.RANDOM), (local, ModelKind.LOCAL)):
            session.execute(update(Article).where(Article.id == article_id).values(model_kind=kind))
    login(client, "ed", account(db, "ed"))
    badge = f'<span class="badge noise" role="note">{RANDOM_WEIGHTS_NOTE}</span>'
    rows = client.get("/articles?status=pending_review").text.split("<tr data-row>")[1:]
    marked = {int(re.findall(r'href="/articles/(\d+)\?', row)[0]): badge in row for row in rows}
    assert marked == {noise: True, local: False, old: False}
    for article_id in (noise, local, old):
        for path in (f"/articles/{article_id}", f"/articles/{article_id}/edit"):
            page = client.get(path).text
            assert (RANDOM_WEIGHTS_NOTE in page) is (article_id == noise), path
    page = client.get(f"/articles/{noise}").text
    assert "<dt>Model kind</dt><dd>random</dd>" in page


def test_word_diff_marks_what_changed() -> None:
    diff = word_diff(
        "The night train is slow.\n\nIt is cheap.", "The night bus is slow.\n\nIt is cheap."
    )
    assert (diff.removed, diff.added) == (1, 1)
    assert [s.text for s in diff.left if s.kind == "removed"] == ["train"]
    assert [s.text for s in diff.right if s.kind == "added"] == ["bus"]
    assert word_diff("a b", "a b").identical
    # A new paragraph break is a change of its own, though no word changed.
    moved = word_diff("One. Two.", "One.\n\nTwo.")
    assert (moved.removed, moved.added) == (0, 0)
    assert [s.kind for s in moved.right] == ["same", "added", "same"]


def test_a_removed_account_and_an_old_login_open_nothing(
    client: TestClient, db: Database, run_cli: object, tmp_path: Path, database_url: str
) -> None:
    seed(db, 1)
    login(client, "tom", account(db, "tom", ReviewerRole.VIEWER))
    cookie = client.cookies.get("articlegen_session") or ""
    assert run_cli("reviewers", "remove", "tom").exit_code == 0  # type: ignore[operator]
    account(db, "maria")  # on SQLite, a new account could have taken tom's id
    replay = workspace(database_url, tmp_path / "cache")
    replay.cookies.set("articlegen_session", cookie)
    assert replay.get("/articles", follow_redirects=False).status_code == 303
    # A cookie signed with the workspace's own key, but for a login 13 hours ago: over.
    with db.session(write=False) as session:
        maria = session.scalars(select(Reviewer).where(Reviewer.name == "maria")).one()
        data = {"reviewer": maria.id, "key": maria.session_key, "csrf": "x"}
    key = secret_key(Settings(database_url=database_url, cache_dir=tmp_path / "cache"))

    def signed(since: int) -> str:
        payload = base64.b64encode(json.dumps({**data, "since": since}).encode())
        return TimestampSigner(key).sign(payload).decode()

    replay.cookies.set("articlegen_session", signed(int(time.time()) - 13 * 3600))
    assert replay.get("/articles", follow_redirects=False).status_code == 303
    replay.cookies.set("articlegen_session", signed(int(time.time()) - 3600))
    assert replay.get("/articles", follow_redirects=False).status_code == 200


def test_a_stale_selection_overwrites_no_other_verdict(client: TestClient, db: Database) -> None:
    ids = seed(db, 3)
    csrf = login(client, "maria", account(db, "maria"))
    boxes = re.findall(r'name="ids" value="(\d+:\d+)"', client.get("/articles").text)
    assert f"{ids[1]}:1" in boxes
    with db.session() as session:  # Tom acts on article 1 while Maria's page is open
        session.execute(update(Article).where(Article.id == ids[1]).values(lock_version=2))
    selected = [f"{ids[0]}:1", f"{ids[1]}:1"]
    answer = client.post(
        "/articles/bulk", data={"csrf_token": csrf, "do": "approve-selected", "ids": selected}
    )
    assert flashes(answer.text)[0].startswith(f"article {ids[1]} changed since you opened it")
    assert {_status(db, i) for i in ids} == {ArticleReviewStatus.PENDING_REVIEW}  # all or none
    assert _events(db) == []


def test_acting_on_all_needs_the_same_articles_not_as_many(
    client: TestClient, db: Database
) -> None:
    ids = seed(db, 4)
    csrf = login(client, "ed", account(db, "ed"))
    form = {"csrf_token": csrf, "status": "pending_review", "do": "reject-all", "note": "no"}
    ask = client.post("/articles/bulk", data=form).text
    with db.session() as session:  # one leaves the filter, another comes in: still four
        approved = ArticleReviewStatus.APPROVED
        session.execute(update(Article).where(Article.id == ids[0]).values(review_status=approved))
    seed(db, 1)
    confirmed = {**form, "expected": "4", "digest": _digest(ask), "confirmed": "yes"}
    stale = client.post("/articles/bulk", data=confirmed)
    assert flashes(stale.text)[0].startswith(
        "the filter now holds 4 articles, not the 4 you confirmed (or not the same ones)"
    )
    assert _events(db) == []


def test_odd_requests_get_pages_not_tracebacks(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    for query in ("prompt=%C2%B2", "q=%00", "tag=a%00b", "model=%00"):
        answer = client.get(f"/articles?{query}")
        assert answer.status_code in (200, 400), query
        assert "text/html" in answer.headers["content-type"], query
    assert "holds a NUL character" in client.get("/articles?tag=a%00b").text
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    put = client.put("/articles")
    assert put.status_code == 405
    assert "text/html" in put.headers["content-type"]
    saved = client.post(
        f"/articles/{article_id}/edit",
        data={"csrf_token": csrf, "version": "1", "title": "T", "body": "Bad \x00 byte"},
    )
    assert saved.status_code == 400
    assert "the text holds a NUL character: remove it" in saved.text
    assert "Bad" in saved.text  # the editor's text is still in the form
    assert _events(db) == []


def test_every_flash_message_is_shown(client: TestClient, db: Database) -> None:
    ids = seed(db, 2)
    csrf = login(client, "ed", account(db, "ed"))
    for article_id in ids:
        client.post(
            f"/articles/{article_id}/approve",
            data={"csrf_token": csrf, "version": "1"},
            follow_redirects=False,
        )
    assert flashes(client.get("/articles").text) == [
        f"Approved article {ids[0]}.",
        f"Approved article {ids[1]}.",
    ]


def test_a_refused_edit_keeps_the_editors_text(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    with db.session() as session:  # someone acted meanwhile
        session.execute(update(Article).values(lock_version=5))
    answer = client.post(
        f"/articles/{article_id}/edit",
        data={"csrf_token": csrf, "version": "1", "title": "Mine", "body": "My careful text."},
    )
    assert answer.status_code == 409
    assert "changed since you opened it" in answer.text
    assert "My careful text." in answer.text


def test_failures_from_one_address_do_not_lock_out_another(db: Database) -> None:
    password = account(db, "maria")
    with db.session() as session:
        for _ in range(3):
            assert try_login(session, "maria", "wrong", "192.0.2.7").refused
    with db.session() as session:
        assert try_login(session, "maria", password, "192.0.2.7").retry_after > 0
        assert try_login(session, "maria", password, "127.0.0.1").reviewer_id is not None


def test_a_long_error_keeps_the_session_cookie_small(client: TestClient, db: Database) -> None:
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    answer = client.post(
        f"/articles/{article_id}/regenerate",
        data={"csrf_token": csrf, "settings": "temperature=" + "9" * 3980},
        follow_redirects=False,
    )
    assert len(answer.headers["set-cookie"]) < 4096  # a browser would drop a larger one
    (message,) = flashes(client.get(answer.headers["location"]).text)
    assert message.startswith("settings: `temperature`: ")
    assert len(html.unescape(message)) <= 300


def test_ids_no_row_can_have_are_not_found_on_every_route(client: TestClient, db: Database) -> None:
    # Past PostgreSQL's `integer`, a query would fail there (a 500) and find nothing on
    # SQLite: every route refuses such an id before it queries.
    (article_id,) = seed(db, 1)
    csrf = login(client, "ed", account(db, "ed"))
    huge = "99999999999999999999"
    for path in (f"/articles/{huge}", f"/articles/{huge}/edit", f"/articles/{huge}/html",
                 f"/articles/{huge}/diff", f"/jobs/{huge}", "/jobs/0", "/articles/-1"):  # fmt: skip
        answer = client.get(path)
        assert (answer.status_code, "text/html" in answer.headers["content-type"]) == (404, True)
    against = client.get(f"/articles/{article_id}/diff?against={huge}")
    assert against.status_code == 400
    assert (
        "`query.against`: input should be less than or equal to 2147483647, got "
        f"'{huge}'" in html.unescape(against.text)
    )
    for verb in ("approve", "reject", "regenerate", "edit"):
        answer = client.post(f"/articles/{huge}/{verb}", data={"csrf_token": csrf})
        assert answer.status_code == 404, verb
    bulk = {"csrf_token": csrf, "do": "approve-selected", "ids": [str(article_id), huge]}
    answer = client.post("/articles/bulk", data=bulk)
    assert flashes(answer.text) == [
        f"no article {huge}: article ids run from 1 to 2147483647; `articlegen articles list` "
        "shows the articles there are"
    ]
    assert _events(db) == []
