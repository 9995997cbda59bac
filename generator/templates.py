"""Jinja2 templates: one sandboxed environment, strict about undefined names.

Bundled templates live in the repository's `templates/`; a user directory
(ARTICLEGEN_TEMPLATES_DIR) is searched first, so a user template overrides a bundled one by name.
Prompt and model text only ever enter as variables, never as template source, and HTML templates
autoescape, so `{{ 7*7 }}` in a prompt stays those characters and `<script>` arrives escaped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from articlegen.core.bounds import MAX_SETTINGS_FILE_BYTES
from articlegen.core.errors import TemplateError
from articlegen.core.files import check_input_file

__all__ = ["BUNDLED_TEMPLATES", "Rendered", "Templates"]

BUNDLED_TEMPLATES = Path(str(files("articlegen.templates")))


@dataclass(frozen=True)
class Rendered:
    """A rendered template, with the name and version (digest of its source) that made it."""

    text: str
    name: str
    version: str


class Templates:
    """The template environment: build once, render many."""

    def __init__(self, user_dir: Path | None = None) -> None:
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
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(self.search_path),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2"),
                default_for_string=False,
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

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
            text = template.render(context)
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


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's file and line.
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
