"""Our HTML pages in a real browser: headless Chromium, JavaScript on, the DOM read back.

Escaping is checked where it matters, in a browser that would run any script that got through.
Chromium comes from the OS packages (.ci/run installs it); locally the test skips without it,
under CI=true it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from articlegen.generator.templates import Templates

PAYLOAD = '<script>document.body.setAttribute("data-pwned", "script")</script>'
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed (CI=true: the browser tests must run)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


def _dom(page: Path, profile: Path) -> str:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom",
    ]  # fmt: skip
    done = subprocess.run(
        [_chromium(), *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def _body_tag(dom: str) -> str:
    match = re.search(r"<body[^>]*>", dom)
    assert match is not None, dom[:500]
    return match.group()


def test_article_page_shows_text_and_runs_none_of_it(tmp_path: Path) -> None:
    context = {
        "title": f"Trains {PAYLOAD}",
        "topic": f"Topic {IMG}",
        "paragraphs": ["First paragraph.", f"Second {PAYLOAD} {IMG} paragraph."],
        "meta": {"model": "gpt2", "preset": "nucleus", "seed": 1, "words": 4,
                 "perplexity": 12.0, "flags": ["too_short"]},
    }  # fmt: skip
    page = tmp_path / "article.html"
    page.write_text(Templates().render("article.html.j2", context).text, encoding="utf-8")
    dom = _dom(page, tmp_path / "profile")
    # The page loaded and no injected script or handler ran: either would mark <body>.
    assert _body_tag(dom) == "<body>"
    assert "<p>First paragraph.</p>" in dom
    assert "&lt;script&gt;" in dom  # the payload is shown as text
    assert dom.count("<p>") == 2
    assert '<span class="flag">too_short</span>' in dom


def test_export_index_in_a_browser(tmp_path: Path) -> None:
    entries = [
        {"id": 1, "title": f"A {PAYLOAD}", "file": "00001-a.html", "words": 3, "flags": [],
         "review_status": "approved"},
    ]  # fmt: skip
    page = tmp_path / "index.html"
    page.write_text(Templates().render("index.html.j2", {"articles": entries}).text, "utf-8")
    dom = _dom(page, tmp_path / "profile")
    assert _body_tag(dom) == "<body>"
    assert '<a href="00001-a.html">A &lt;script&gt;' in dom
