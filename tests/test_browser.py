"""Our HTML pages in a real browser: headless Chromium, JavaScript on, the DOM read back.

Escaping is checked where it matters, in a browser that would run any script that got through.
Chromium comes from the OS packages (.ci/run installs it) and Playwright drives it; locally the
test skips without it, under CI=true it fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser

from articlegen.generator.templates import Templates

from .conftest import record_dialogs

PAYLOAD = '<script>document.body.setAttribute("data-pwned", "script")</script>'
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"


def _dom(browser: Browser, page: Path) -> str:
    """The live DOM of `page` after its scripts (if any got through) had their chance."""
    tab = browser.new_page()
    dialogs = record_dialogs(tab)
    try:
        tab.goto(page.as_uri())
        tab.wait_for_timeout(300)
        assert dialogs == []  # no alert(), confirm() or prompt() ran
        return tab.content()
    finally:
        tab.close()


def _body_tag(dom: str) -> str:
    match = re.search(r"<body[^>]*>", dom)
    assert match is not None, dom[:500]
    return match.group()


def test_article_page_shows_text_and_runs_none_of_it(browser: Browser, tmp_path: Path) -> None:
    context = {
        "title": f"Trains {PAYLOAD}",
        "topic": f"Topic {IMG}",
        "paragraphs": ["First paragraph.", f"Second {PAYLOAD} {IMG} paragraph."],
        "meta": {"model": "gpt2", "preset": "nucleus", "seed": 1, "words": 4,
                 "perplexity": 12.0, "flags": ["too_short"]},
    }  # fmt: skip
    page = tmp_path / "article.html"
    page.write_text(Templates().render("article.html.j2", context).text, encoding="utf-8")
    dom = _dom(browser, page)
    # The page loaded and no injected script or handler ran: either would mark <body>.
    assert _body_tag(dom) == "<body>"
    assert "<p>First paragraph.</p>" in dom
    assert "&lt;script&gt;" in dom  # the payload is shown as text
    assert dom.count("<p>") == 2
    assert '<span class="flag">too_short</span>' in dom


def test_export_index_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    entries = [
        {"id": 1, "title": f"A {PAYLOAD}", "file": "00001-a.html", "words": 3, "flags": [],
         "review_status": "approved"},
    ]  # fmt: skip
    page = tmp_path / "index.html"
    page.write_text(Templates().render("index.html.j2", {"articles": entries}).text, "utf-8")
    dom = _dom(browser, page)
    assert _body_tag(dom) == "<body>"
    assert '<a href="00001-a.html">A &lt;script&gt;' in dom
