"""Templates: data never becomes code, user templates override ours, errors name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from articlegen.core.errors import TemplateError
from articlegen.generator.templates import BUNDLED_TEMPLATES, Templates


def _article(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "title": "Night trains",
        "topic": "Night trains",
        "paragraphs": ["First paragraph.", "Second paragraph."],
        "meta": {"model": "gpt2", "preset": "nucleus", "seed": 7, "words": 4},
    }
    return {**context, **overrides}


def test_bundled_templates_exist() -> None:
    assert {"prompt.txt.j2", "article.md.j2", "article.html.j2"} <= set(Templates().names())
    assert BUNDLED_TEMPLATES.is_dir()


def test_prompt_template_uses_topic_and_client_fields() -> None:
    templates = Templates()
    plain = templates.render("prompt.txt.j2", {"topic": " Night trains ", "extra": {}})
    assert plain.text == "Night trains\n\n"
    guided = templates.render(
        "prompt.txt.j2",
        {"topic": "Night trains", "extra": {"audience": "commuters", "tone": "warm"}},
    )
    assert guided.text == "Night trains\n\nA guide for commuters, in a warm tone.\n\n"


def test_markdown_article() -> None:
    rendered = Templates().render("article.md.j2", _article())
    assert rendered.text.startswith("# Night trains\n\nFirst paragraph.\n\nSecond paragraph.\n")
    assert "*Written by gpt2 (nucleus, seed 7), 4 words.*" in rendered.text
    assert rendered.name == "article.md.j2"
    assert len(rendered.version) == 12


@pytest.mark.parametrize("name", ["article.md.j2", "article.html.j2"])
def test_prompt_and_model_text_are_data_not_code(name: str) -> None:
    context = _article(
        title="{{ 7*7 }}",
        topic="{% for x in range(3) %}loop{% endfor %}",
        paragraphs=["<script>alert(1)</script> and {{ 7*7 }}"],
    )
    text = Templates().render(name, context).text
    assert "49" not in text
    assert "looploop" not in text
    assert "{{ 7*7 }}" in text
    # Markdown passes raw HTML through to whoever renders it: escaped there too.
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_html_page_shows_metadata() -> None:
    meta = {
        "model": "gpt2",
        "revision": "abc123",
        "preset": "beam",
        "seed": 3,
        "words": 4,
        "perplexity": 12.345,
        "flags": ["too_short"],
    }
    text = Templates().render("article.html.j2", _article(meta=meta)).text
    assert text.startswith("<!doctype html>")
    assert "<p>First paragraph.</p>" in text
    assert "12.3" in text
    assert '<span class="flag">too_short</span>' in text


def test_user_templates_override_bundled_by_name(tmp_path: Path) -> None:
    (tmp_path / "article.md.j2").write_text("CUSTOM {{ title }}\n", encoding="utf-8")
    templates = Templates(tmp_path)
    assert templates.render("article.md.j2", _article()).text == "CUSTOM Night trains\n"
    # Names the user does not provide still come from the bundle.
    assert templates.render("prompt.txt.j2", {"topic": "x", "extra": {}}).text == "x\n\n"


def test_missing_variable_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "t.md.j2").write_text("Title: {{ title }}\n\nBy {{ author }}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Templates(tmp_path).render("t.md.j2", {"title": "x"})
    assert str(caught.value).startswith("template `t.md.j2`, line 3: 'author' is undefined")


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.md.j2").write_text("ok\n{% if title %}\nno endif\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"template `bad.md.j2`, line \d+: syntax error"):
        Templates(tmp_path).render("bad.md.j2", {"title": "x"})


def test_unknown_template() -> None:
    with pytest.raises(TemplateError, match=r"template `nope.j2` not found in .*; available: "):
        Templates().render("nope.j2", {})


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "evil.j2").write_text("{{ title.__class__.__mro__ }}", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"template `evil\.j2`"):
        Templates(tmp_path).render("evil.j2", {"title": "x"})


def test_missing_user_directory(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"does not exist: fix ARTICLEGEN_TEMPLATES_DIR"):
        Templates(tmp_path / "missing")


def test_runtime_error_in_a_user_template(tmp_path: Path) -> None:
    (tmp_path / "div.md.j2").write_text("a\n{{ 1 / 0 }}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Templates(tmp_path).render("div.md.j2", {})
    assert str(caught.value) == "template `div.md.j2`, line 2: ZeroDivisionError: division by zero"
