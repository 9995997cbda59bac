"""What templates output is safe: HTML and Markdown escaped, links filtered, control characters
dropped, and every render within a time and a size limit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from articlegen.core.errors import TemplateError
from articlegen.core.safe_text import escape_markdown_html, safe_url, strip_controls
from articlegen.generator.templates import RenderLimits, Templates

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'
# Every field an article template sees, each carrying markup of its own.
EVERY_FIELD = (
    "{{ title }}|{{ topic }}|{{ prompt }}|{{ body }}|{% for p in paragraphs %}{{ p }}{% endfor %}|"
    "{{ extra.audience }}|{{ meta.model }}|{{ meta.preset }}|{{ meta.flags | join(',') }}\n"
)


def _context(text: str) -> dict[str, Any]:
    return {
        "title": f"Title {text}",
        "topic": f"Topic {text}",
        "prompt": f"Prompt {text}",
        "body": f"Body {text}",
        "paragraphs": [f"Paragraph {text}"],
        "extra": {"audience": f"Audience {text}"},
        "meta": {"model": f"model{text}", "preset": f"preset{text}", "seed": 1, "words": 2,
                 "flags": [f"flag{text}"]},
    }  # fmt: skip


@pytest.fixture
def user_templates(tmp_path: Path) -> Path:
    (tmp_path / "every.md.j2").write_text(EVERY_FIELD, encoding="utf-8")
    (tmp_path / "every.html.j2").write_text(EVERY_FIELD, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "name", ["every.md.j2", "every.html.j2", "article.md.j2", "article.html.j2"]
)
def test_markup_in_every_field_arrives_escaped(name: str, user_templates: Path) -> None:
    text = Templates(user_templates).render(name, _context(XSS)).text
    assert "<script" not in text
    assert "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in text
    if name.startswith("every"):
        # Nine fields, each escaped once: no field slipped through, none escaped twice.
        assert text.count("&lt;script&gt;") == 9
        assert "&amp;lt;" not in text


def test_markdown_stays_readable() -> None:
    assert escape_markdown_html("Salt & pepper, 5 > 3, a<b") == "Salt & pepper, 5 &gt; 3, a&lt;b"
    # `&` is escaped only where a renderer would decode it into something else.
    assert escape_markdown_html("&lt;b&gt; &#60; &#x3C; &amp") == (
        "&amp;lt;b&amp;gt; &amp;#60; &amp;#x3C; &amp"
    )


def test_a_value_marked_safe_stays_raw(tmp_path: Path) -> None:
    (tmp_path / "raw.md.j2").write_text("{{ own | safe }} {{ data }}\n", encoding="utf-8")
    text = Templates(tmp_path).render("raw.md.j2", {"own": "<br>\x07", "data": "<br>"}).text
    assert text == "<br> &lt;br&gt;\n"


def test_text_templates_output_values_as_given() -> None:
    # The prompt template makes the model's prompt, not a page: nothing to escape there.
    text = Templates().render("prompt.txt.j2", {"topic": "Tags <b> & co", "extra": {}}).text
    assert text == "Tags <b> & co\n\n"


@pytest.mark.parametrize("name", ["every.md.j2", "every.html.j2"])
def test_control_and_bidi_characters_are_dropped(name: str, user_templates: Path) -> None:
    hidden = "a\u202eb\u2066c\x00d\x1b[31me\x85f\tg\r\nh"
    text = Templates(user_templates).render(name, _context(hidden)).text
    assert text.startswith("Title abcd[31mef\tg\nh|Topic abcd[31mef\tg\nh|")
    for char in ("\u202e", "\u2066", "\x00", "\x1b", "\x85", "\r"):
        assert char not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a\u202ab\u202bc\u202cd\u202de\u202ef", "abcdef"), ("a\u2066b\u2067c\u2068d\u2069e", "abcde"),
     ("x\x01\x08\x0b\x0c\x0e\x1f\x7fy", "xy"), ("c1\x80\x9f.", "c1."), ("tab\tnl\n", "tab\tnl\n"),
     ("cr\rcrlf\r\n", "cr\ncrlf\n"),
     ("\u200f\u061c rtl marks stay", "\u200f\u061c rtl marks stay")],
)  # fmt: skip
def test_strip_controls(text: str, expected: str) -> None:
    assert strip_controls(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [("https://example.com/a?b=1&c=2#d", "https://example.com/a?b=1&c=2#d"),
     ("HTTP://EXAMPLE.COM", "HTTP://EXAMPLE.COM"),
     ("mailto:ed@example.com", "mailto:ed@example.com"),
     ("00001-night-trains.html", "00001-night-trains.html"), ("../a/b.md", "../a/b.md"),
     ("page.html#part:two", "page.html#part:two"), ("//cdn.example.com/x", "//cdn.example.com/x"),
     ("https://example.com/a b(c)\"'<>", "https://example.com/a%20b%28c%29%22%27%3C%3E"),
     ("javascript:alert(1)", "#"), ("JaVaScRiPt:alert(1)", "#"), (" JaVa\tscript:alert(1)", "#"),
     ("java\nscript:alert(1)", "#"), ("\x01javascript:alert(1)", "#"), ("java\u200bscript:x", "#"),
     ("javascript&colon;alert(1)", "#"), ("&#106;avascript:alert(1)", "#"),
     ("data:text/html;base64,PHNjcmlwdD4=", "#"), ("vbscript:msgbox(1)", "#"),
     ("file:///etc/passwd", "#"), ("1x:y", "#")],
)  # fmt: skip
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_index_links_only_where_it_is_safe(fmt: str) -> None:
    entries = [
        {"id": 1, "title": XSS, "file": "javascript:alert(1)", "words": 3, "flags": [],
         "review_status": "approved"},
        {"id": 2, "title": "Fine", "file": "00002-fine." + fmt, "words": 3, "flags": [],
         "review_status": "approved"},
    ]  # fmt: skip
    text = Templates().render(f"index.{fmt}.j2", {"articles": entries}).text
    assert "javascript:" not in text
    assert "<script" not in text
    if fmt == "md":
        assert "](#)" in text
        assert "[Fine](00002-fine.md)" in text
    else:
        assert '<a href="#">&lt;script&gt;' in text
        assert '<a href="00002-fine.html">Fine</a>' in text


LIMITS = RenderLimits(seconds=0.5, max_chars=100_000)
MAX = "over the limit of 100,000 (ARTICLEGEN_TEMPLATE_MAX_CHARS)"
SLOW = (
    ", line 1: rendering took longer than its limit of 0.5 s (ARTICLEGEN_TEMPLATE_SECONDS): a "
    "loop that does not end, or one over far too much"
)
ASKED = f"asked for 1,000,000,000 characters, {MAX}"
WIDTH = f", line 1: a format width of 999999999 characters is {MAX}"
OUTPUT = f"the output of 100,005 characters or items is {MAX}"
LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (LOOPS + "{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}", SLOW),
        ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
         "{{ f(60) }}", SLOW),
        ('a\n{{ "x" * 10**9 }}', f", line 2: a value of 1,000,000,000 characters or items is {MAX}"
         ),
        (LOOPS + "{{ title }}{% endfor %}{% endfor %}", f", line 1: {OUTPUT}"),
        (LOOPS + "xxxxx{% endfor %}{% endfor %}", f": {OUTPUT}"),  # no value: the whole output
        ('{% set ns = namespace(s="x") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}'
         "{% endfor %}", f", line 1: a value of 131,072 characters or items is {MAX}"),
        ("{% set x %}{% for i in range(100000) %}{{ title }}{% endfor %}{% endset %}",
         f", line 1: {OUTPUT}"),
        ('{{ "x" | center(10**9) }}', f", line 1: `center` {ASKED}"),
        ('{{ "x".ljust(10**9) }}', f", line 1: `ljust` {ASKED}"),
        ('{{ "%0999999999d" % 1 }}', WIDTH),
        ('{{ "%*d" % (10**9, 1) }}', f", line 1: `%` {ASKED}"),
        ('{{ "{:>999999999}".format(1) }}', WIDTH),
        ('{{ "{:>{w}}".format(1, w=10**9) }}', f", line 1: `format` {ASKED}"),
        ("{{ 10 ** (10 ** 8) }}", ", line 1: 10 ** 100000000 is a number too large to compute "
         "(ARTICLEGEN_TEMPLATE_MAX_CHARS)"),
    ],
    ids=["nested-loops", "recursion", "repeat", "loop-output", "loop-text", "doubling",
         "captured", "center", "ljust", "percent", "percent-star", "format", "format-nested",
         "power"],
)  # fmt: skip
def test_a_template_past_its_limits_fails_naming_the_limit(
    source: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "bad.md.j2").write_text(source, encoding="utf-8")
    templates = Templates(tmp_path, LIMITS)
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        templates.render("bad.md.j2", {"title": "hello"})
    assert time.monotonic() - started < 5  # the 0.5 s limit, and a step at most
    assert str(caught.value) == f"template `bad.md.j2`{message}"
    # The environment renders the next template as before: the budget was the render's.
    assert templates.render("prompt.txt.j2", {"topic": "x", "extra": {}}).text == "x\n\n"


def test_the_limits_leave_ordinary_templates_alone(tmp_path: Path) -> None:
    (tmp_path / "ok.md.j2").write_text(
        "{{ range(5) | list }} {% for i in range(3) %}{{ loop.index }}/{{ loop.length }}"
        "{% if loop.last %}!{% endif %}{% else %}none{% endfor %}"
        "{% for i in [] %}x{% else %} empty{% endfor %} {{ '%05.1f' | format(3.14159) }} "
        "{{ '{:>6}'.format('ab') }} {{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 'x' ~ 1 ~ 'y' }} "
        "{{ 'ab' | center(6) }}|{{ 12345678901234 | filesizeformat }}\n",
        encoding="utf-8",
    )
    text = Templates(tmp_path, LIMITS).render("ok.md.j2", {}).text
    assert text == (
        "[0, 1, 2, 3, 4] 1/32/33/3! empty 003.1     ab ababab 1024 x1y   ab  |12.3 TB\n"
    )
