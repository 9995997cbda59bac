"""The README's screenshots of the review workspace, from a real run: `python docs/screenshots.py`.

Run it after `make demo`. It copies the demo's database (articlegen.db) to a temporary folder,
so the demo's own is untouched, serves the workspace over the copy on loopback, and with the
system's Chromium (driven by Playwright) logs in, opens the queue and an article, edits the
article, and saves a PNG of each page and of the edit's word-level diff into docs/.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from articlegen.core.settings import Settings
from articlegen.db import Database
from articlegen.db.models import ReviewerRole
from articlegen.review.accounts import add_account
from articlegen.web import create_app

DOCS = Path(__file__).resolve().parent
SHOTS = {"queue": "review-queue.png", "article": "review-article.png", "diff": "review-diff.png"}


def main(source: Path = Path("articlegen.db")) -> None:
    if not source.exists():
        sys.exit(f"{source} does not exist: run `make demo` first")
    work = Path(tempfile.mkdtemp(prefix="articlegen-shots-"))
    shutil.copy(source, work / "articles.db")
    url = f"sqlite:///{work / 'articles.db'}"
    db = Database.open(url)
    with db.session() as session:
        _, password = add_account(session, "maria", ReviewerRole.EDITOR)
    db.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(Settings(database_url=url, cache_dir=work / "cache"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(base + "/login")
        page.get_by_label("Name").fill("maria")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Review queue").wait_for()
        page.screenshot(path=DOCS / SHOTS["queue"])
        page.locator("[data-row-link]").nth(1).click()
        page.get_by_role("button", name="Approve").wait_for()
        page.screenshot(path=DOCS / SHOTS["article"])
        page.get_by_role("link", name="Edit").click()
        body = page.get_by_label("Text (a blank line between paragraphs)")
        words = body.input_value().split(" ")
        words[6:9] = ["three", "words", "rewritten"]  # a change inside the text
        body.fill("An editor added this opening sentence. " + " ".join(words))
        page.get_by_role("button", name="Save").click()
        page.get_by_role("link", name="Compare the edited text with the generated one").click()
        page.screenshot(path=DOCS / SHOTS["diff"])
        browser.close()
    server.should_exit = True
    print("wrote " + ", ".join(str(DOCS / name) for name in SHOTS.values()))


if __name__ == "__main__":
    main()
