"""Jinja2 templates: one sandboxed environment, strict about undefined names.

Bundled templates live in the repository's `templates/`; a user directory
(ARTICLEGEN_TEMPLATES_DIR) is searched first, so a user template overrides a bundled one by name.
Prompt and model text only ever enter as variables, never as template source, so `{{ 7*7 }}` in a
prompt stays those characters. What a Markdown or HTML template outputs is safe by default:

- HTML templates (`*.html.j2`, `*.htm.j2`, `*.xml.j2`) autoescape: `<script>` arrives escaped;
- Markdown templates (`*.md.j2`) escape what raw HTML needs (`escape_markdown_html`): a Markdown
  renderer passes raw HTML through, so `<img onerror=...>` in model text would run;
- both drop bidirectional overrides and control characters from every value (`strip_controls`).

A value the template marks `| safe` is output as it is (still without control characters). The
filter `safe_url` keeps a link from data only if it is http, https, mailto or relative. Text
templates (`prompt.txt.j2`) output values as they are: what they make is the model's prompt.

Every render runs within a time and a size limit (`generator.sandbox`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Mapping
from contextlib import closing
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import jinja2
from markupsafe import Markup

from articlegen.core.bounds import MAX_SETTINGS_FILE_BYTES
from articlegen.core.errors import TemplateError
from articlegen.core.files import check_input_file
from articlegen.core.safe_text import escape_markdown_html, safe_url, strip_controls
from articlegen.generator.sandbox import LimitedSandbox, RenderLimits

__all__ = ["BUNDLED_TEMPLATES", "RenderLimits", "Rendered", "Templates"]

BUNDLED_TEMPLATES = Path(str(files("articlegen.templates")))
_HTML_SUFFIXES = ("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2")
_MARKDOWN_SUFFIXES = (".md", ".md.j2", ".markdown", ".markdown.j2")


@dataclass(frozen=True)
class Rendered:
    """A rendered template, with the name and version (digest of its source) that made it."""

    text: str
    name: str
    version: str


class Templates:
    """The template environment: build once, render many."""

    def __init__(self, user_dir: Path | None = None, limits: RenderLimits | None = None) -> None:
        if user_dir is not None and not user_dir.is_dir():
            raise TemplateError(
                f"templates directory {user_dir} does not exist: fix ARTICLEGEN_TEMPLATES_DIR "
                "or unset it"
            )
        if user_dir is not None:
            # Every template file looked at before any is opened: Jinja reads a named pipe
            # called `x.md.j2` until something writes to it, which is forever.
            for file in sorted(user_dir.rglob("*.j2")):
                check_input_file(
                    file,
                    f"template {file}",
                    MAX_SETTINGS_FILE_BYTES,
                    "a template is a page of markup; move what it holds into the context",
                    TemplateError,
                )
        self.search_path = [p for p in (user_dir, BUNDLED_TEMPLATES) if p is not None]
        self.limits = limits or RenderLimits()
        self.env = LimitedSandbox(
            self.limits,
            loader=jinja2.FileSystemLoader(self.search_path),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=_HTML_SUFFIXES, default_for_string=False
            ),
            finalize=_finalize,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["safe_url"] = safe_url

    def names(self) -> list[str]:
        """Every template name available, user and bundled."""
        return sorted(set(self.env.list_templates(extensions=["j2"])))

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render template `name`; `TemplateError` names the template and line on any failure."""
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"template `{name}` not found in {', '.join(map(str, self.search_path))}; "
                f"available: {', '.join(self.names())}"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template `{name}`, line {exc.lineno}: syntax error: {exc.message}"
            ) from None
        try:
            text = self._render_within_limits(template, context)
        # A user template can fail like any code ({{ 1/0 }}); it is still the template's fault.
        except Exception as exc:
            line = _template_line(exc.__traceback__, template.filename)
            where = f", line {line}" if line else ""
            hint = (
                ": pass it in the context, or guard it with `{% if x is defined %}`"
                if isinstance(exc, jinja2.UndefinedError)
                else ""
            )
            detail = (
                str(exc)
                if isinstance(exc, jinja2.TemplateError)
                else f"{type(exc).__name__}: {exc}"
            )
            raise TemplateError(f"template `{name}`{where}: {detail}{hint}") from None
        source = Path(template.filename).read_bytes() if template.filename else b""
        return Rendered(text=text, name=name, version=hashlib.sha256(source).hexdigest()[:12])

    def _render_within_limits(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        # Piece by piece, so that text past the size limit is refused before it is all built.
        parts, size = [], 0
        with self.env.budget(), closing(_generator(template, context)) as pieces:
            for part in pieces:
                size += len(part)
                if size > self.limits.max_chars:
                    raise self.env.too_long(size, "the output")
                self.env.check_time()
                parts.append(part)
        return "".join(parts)


def _generator(template: jinja2.Template, context: Mapping[str, Any]) -> Generator[str]:
    # Typed an iterator, `generate` is a generator: closed when a limit stops it early.
    return cast(Generator[str], template.generate(context))


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: Any) -> Any:
    """Every `{{ ... }}` value, made safe for the kind of template outputting it, and counted
    against the render's size limit."""
    name = context.name or ""
    if name.endswith(_MARKDOWN_SUFFIXES):
        text = strip_controls(str(value))
        text = text if isinstance(value, Markup) else escape_markdown_html(text)
    elif name.endswith(_HTML_SUFFIXES):
        if not isinstance(value, str):
            return value  # a number or None: autoescape turns it into text
        text = strip_controls(value)
        text = Markup(text) if isinstance(value, Markup) else text
    else:
        text = str(value)
    environment = context.environment
    assert isinstance(environment, LimitedSandbox)  # the only environment `Templates` builds
    environment.spend(len(text))
    return text


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's file and line.
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
