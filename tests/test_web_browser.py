"""The review workspace in a real browser that clicks: headless Chromium driven by Playwright,
against the app served by uvicorn on loopback, over articles written by a real (tiny) model.

Controls are found by their role and accessible name, as a person with a screen reader finds
them; after each step the database rows are read back. Runs of `articlegen generate` are
processes of their own: Playwright keeps an event loop running in this one, which Prefect would
take for an asynchronous caller.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, expect
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select

from articlegen.cli import cli
from articlegen.core.settings import Settings
from articlegen.db import Article, ArticleReviewStatus, Database, Prompt, PromptStatus
from articlegen.db.models import ReviewAction, ReviewEvent
from articlegen.export import RANDOM_WEIGHTS_NOTE
from articlegen.runs import close_contexts
from articlegen.web import create_app

from .conftest import record_dialogs
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)
from .webapp import XSS, account

# Eight prompts; b3 carries scripts in every text field, b5 and b6 share the tag `bulk`.
PROMPTS = f"""external_id,topic,tags,x_audience
b1,Night trains across Europe,rail,commuters
b2,Sourdough starters in winter,food,bakers
b3,"Bees {XSS.replace('"', '""')}",bees,"{XSS.replace('"', '""')}"
b4,Heat pumps for old houses,home,owners
b5,Repair cafes,bulk,
b6,Walking meetings,bulk,
b7,Handwriting at school,school,
b8,Slow travel by ferry,sea,
"""


@dataclass
class Served:
    """The workspace on loopback, its database, and an editor's credentials."""

    url: str
    db: Database
    env: dict[str, str]
    password: str

    def generate(self, *args: str) -> None:
        """`articlegen generate`, in a process of its own."""
        script = Path(sys.executable).parent / "articlegen"
        done = subprocess.run(
            [str(script), "generate", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    def article(self, external_id: str, version: int = 1) -> Article:
        with self.db.session(write=False) as session:
            return session.scalars(
                select(Article)
                .join(Prompt)
                .where(Prompt.external_id == external_id, Article.version == version)
            ).one()

    def events(self, article_id: int) -> list[tuple[str, ReviewAction, str | None]]:
        with self.db.session(write=False) as session:
            rows = session.scalars(select(ReviewEvent).where(ReviewEvent.article_id == article_id))
            return [(e.actor, e.action, e.note) for e in rows]


def _bound_socket() -> socket.socket:
    """A loopback socket on a free port, kept bound: a port picked and bound later could be
    taken in between by another test worker."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def served(
    prefect_server: None,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("workspace")
    url = f"sqlite:///{home / 'articles.db'}"
    env = {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": url,
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    (home / "prompts.csv").write_text(PROMPTS, encoding="utf-8")
    imported = CliRunner().invoke(cli, ["import", str(home / "prompts.csv")], env=env)
    assert imported.exit_code == 0, imported.output
    db = Database.open(url)
    password = account(db, "maria")
    settings = Settings(database_url=url, cache_dir=home / "cache")
    sock = _bound_socket()
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the workspace did not start"
        time.sleep(0.05)
    try:
        served = Served(f"http://127.0.0.1:{port}", db, env, password)
        served.generate("--max-new-tokens", "24", "--batch-size", "8")
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        db.close()
        close_contexts()


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    """A fresh browser context (no cookies), logged in as the editor through the form."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs = record_dialogs(tab)
    tab.goto(served.url + "/")
    expect(tab).to_have_url(re.compile(r"/login\?next="))
    tab.get_by_label("Name").fill("maria")
    tab.get_by_label("Password").fill(served.password)
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_role("heading", name="Review queue")).to_be_visible()
    yield tab
    assert dialogs == []  # no script ever opened an alert
    context.close()


def _open(page: Page, served: Served, external_id: str) -> Article:
    """Search the queue for the article's prompt and click its title."""
    article = served.article(external_id)
    page.get_by_label("Prompt id or external id").fill(external_id)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name=article.title).click()
    _loaded(page, article)
    return article


def _loaded(page: Page, article: Article) -> None:
    """The article's page is shown and its script runs: a key pressed before the deferred
    script has run is lost (seen on a busy machine), as a person's would be."""
    expect(page.get_by_role("heading", level=1)).to_have_text(article.title)
    page.wait_for_load_state("load")


def test_filter_open_and_approve_with_the_keyboard(page: Page, served: Served) -> None:
    page.get_by_label("Search").fill("sourdough")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    article = served.article("b2")
    page.get_by_role("link", name=article.title).click()
    _loaded(page, article)
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.get_by_role("status")).to_have_text(f"Approved article {article.id}.")
    approved = served.article("b2")
    assert approved.review_status is ArticleReviewStatus.APPROVED
    assert served.events(article.id) == [("maria", ReviewAction.APPROVE, None)]


def test_reject_with_a_reason(page: Page, served: Served) -> None:
    article = _open(page, served, "b4")
    page.keyboard.press("r")
    expect(page.get_by_label("Reason for rejecting")).to_be_focused()
    page.keyboard.type("Says nothing about noise")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(f"Rejected article {article.id}.")
    rejected = served.article("b4")
    assert (rejected.review_status, rejected.reviewer_note) == (
        ArticleReviewStatus.REJECTED, "Says nothing about noise")  # fmt: skip
    assert served.events(article.id) == [("maria", ReviewAction.REJECT, "Says nothing about noise")]


def test_edit_then_approve(page: Page, served: Served) -> None:
    article = _open(page, served, "b7")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Title").fill("Handwriting still matters")
    page.get_by_label("Text (a blank line between paragraphs)").fill(
        "Children who write by hand remember more.\n\nTeachers see it every day."
    )
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Handwriting still matters")
    expect(page.get_by_text("Teachers see it every day.")).to_be_visible()
    edited = served.article("b7")
    assert edited.edited_body == (
        "Children who write by hand remember more.\n\nTeachers see it every day."
    )
    assert edited.body == article.body  # the generated text stays
    assert edited.review_status is ArticleReviewStatus.APPROVED
    assert served.events(article.id) == [("maria", ReviewAction.EDIT, None)]
    page.get_by_role("link", name="Compare the edited text with the generated one").click()
    expect(page.get_by_role("heading", name="Edited by maria")).to_be_visible()
    expect(page.locator("ins").first).to_contain_text("Children")


def test_bulk_approve_every_article_a_filter_holds(page: Page, served: Served) -> None:
    page.get_by_label("Tag").fill("bulk")
    page.get_by_label("Status", exact=True).select_option("pending_review")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Approve all 2 matching").click()
    expect(page.get_by_role("heading", name="Approve 2 article(s)?")).to_be_visible()
    page.get_by_role("button", name="Yes, approve 2 article(s)").click()
    expect(page.get_by_role("status")).to_have_text("Approved: all 2 article(s) that matched.")
    for external_id in ("b5", "b6"):
        done = served.article(external_id)
        assert done.review_status is ArticleReviewStatus.APPROVED
        assert served.events(done.id) == [("maria", ReviewAction.APPROVE, None)]


def test_regenerate_then_see_version_two_and_its_diff(page: Page, served: Served) -> None:
    first = _open(page, served, "b8")
    page.get_by_label("Preset for the new version").select_option("precise")
    page.get_by_label("Settings, one NAME=VALUE per line").fill("max_new_tokens=16")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("status")).to_contain_text("Queued a new version")
    with served.db.session(write=False) as session:
        prompt = session.get_one(Article, first.id).prompt
        assert (prompt.status, prompt.regenerate, prompt.preset) == (
            PromptStatus.PENDING, [1], "precise")  # fmt: skip
    served.generate()
    second = served.article("b8", version=2)
    assert (second.preset, second.decoding["max_new_tokens"]) == ("precise", 16)
    page.reload()
    page.get_by_role("link", name="Compare with version 2").click()
    expect(page.get_by_role("heading", name=f"Version 1 (article {first.id})")).to_be_visible()
    expect(page.get_by_role("heading", name=f"Version 2 (article {second.id})")).to_be_visible()


def test_scripts_in_every_field_stay_inert(page: Page, served: Served) -> None:
    article = _open(page, served, "b3")
    page.get_by_text("As its HTML template renders it").click()  # the framed rendering too
    page.wait_for_timeout(500)
    for url in (f"/articles/{article.id}", "/articles?q=bees", f"/articles/{article.id}/edit"):
        page.goto(served.url + url)
        assert page.evaluate("document.body.dataset.pwned") is None, url
        assert page.locator("script:not([src])").count() == 0, url
    page.goto(served.url + f"/articles/{article.id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("<script>")
    expect(page.locator("dd", has_text="onerror").first).to_be_visible()  # shown as text


def test_articles_of_random_weights_say_so_where_the_reader_looks(
    page: Page, served: Served
) -> None:
    # The tiny model is `models init`'s: random weights, noise. Every row of the queue wears
    # the badge, and the article page keeps it in view while its text scrolls by.
    page.goto(served.url + "/articles")
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    badges = page.get_by_role("note").filter(has_text=RANDOM_WEIGHTS_NOTE)
    expect(badges).to_have_count(rows.count())
    _open(page, served, "b1")
    badge = page.get_by_role("note").filter(has_text=RANDOM_WEIGHTS_NOTE)
    expect(badge).to_be_visible()
    below = badge.evaluate("e => e.getBoundingClientRect().bottom + window.scrollY")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    # Scrolled past where the badge stood: only a badge that follows is still in view.
    page.wait_for_function(f"window.scrollY > {below}")
    expect(badge).to_be_in_viewport()


def test_usable_at_phone_width(browser: Browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = context.new_page()
    tab.goto(served.url + "/login")
    tab.get_by_label("Name").fill("maria")
    tab.get_by_label("Password").fill(served.password)
    tab.get_by_role("button", name="Log in").click()
    tab.get_by_role("link", name=served.article("b1").title).click()
    for name in ("Approve", "Reject", "Regenerate"):
        expect(tab.get_by_role("button", name=name)).to_be_visible()
    expect(tab.get_by_role("link", name="Edit")).to_be_visible()
    # Nothing is wider than the screen: no sideways scrolling to reach a control.
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
