"""Text on its way out of articlegen (exports, rendered articles): three rules, each defined once;
and the one check for plain text on its way in (CSV cells, system messages), `control_problem`.

- `strip_controls`: no bidirectional overrides or isolates (U+202A to U+202E, U+2066 to U+2069:
  they make text read differently from what it holds, "Trojan Source") and no C0/C1 control
  characters but tab and newline (a carriage return becomes a newline). Model output can hold
  any of them.
- `escape_markdown_html`: raw HTML in Markdown is HTML, which every Markdown renderer passes
  through; `<` and `>` become `&lt;` and `&gt;`, and `&` becomes `&amp;` where it would start a
  character reference. The rest of the text stays as written, so the Markdown stays readable
  ("Q&A" stays "Q&A").
- `safe_url`: a link from data keeps http, https, mailto and relative addresses; any other
  scheme (`javascript:`, `data:`, `vbscript:`, ...) becomes "#", however it is disguised.
- `control_problem`: the characters `strip_controls` would take out, refused where text comes
  in rather than stripped (what is stored is what was written); a carriage return is whitespace
  there, as in any CSV cell.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any
from urllib.parse import quote

__all__ = [
    "SAFE_URL_SCHEMES",
    "clean_exported",
    "control_problem",
    "escape_markdown_html",
    "safe_url",
    "strip_controls",
]

SAFE_URL_SCHEMES = ("http", "https", "mailto")
# C0 but tab and newline (carriage returns are turned into newlines first), DEL, C1, and the
# bidirectional embeddings, overrides and isolates.
_BUT_CR = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[{_BUT_CR}\r]")
# The same but carriage returns: what plain text taken in (a cell, a system message) may not hold.
_FORBIDDEN = re.compile(f"[{_BUT_CR}]")
_C1_NAMES = {"\x85": "NEXT LINE"}  # unicodedata names no C0/C1 control but through aliases
# Where `&` starts what HTML would decode: a named, decimal or hexadecimal reference.
_REFERENCE = re.compile(r"&(?=[A-Za-z][A-Za-z0-9]*;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)")
# What a browser ignores, or a reader cannot see, inside a scheme: dropped before reading it, so
# ` JaVa\tscript:` is read as the `javascript:` it is.
_INVISIBLE = re.compile("[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Characters a URL may keep as they are; others (spaces, quotes, brackets, parentheses that would
# end a Markdown link) are percent-encoded. `%` stays: the URL may already be encoded.
_URL_SAFE = "!#$%&*+,-./:;=?@[]_~"


def control_problem(value: str) -> str | None:
    """Why `value` cannot be taken as plain text (its first control or bidi character, named,
    with where it is and the fix), or None. A carriage return is whitespace here, as in a CSV
    cell: `strip_controls` turns it into a newline rather than take it out."""
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    char = found.group()
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "") or _C1_NAMES.get(char, "")
    label = f"{code} ({name})" if name else code
    where = f"at character {found.start() + 1}"
    if char >= "\u202a":
        return (
            f"holds {label} {where}, a bidirectional control that makes text display in "
            "another order than it is stored: remove it (use plain text; a right-to-left "
            "language needs no such character)"
        )
    return f"holds the control character {label} {where}: remove it"


def strip_controls(text: str) -> str:
    """`text` without bidirectional controls and C0/C1 control characters (tab and newline
    stay; a carriage return, alone or before a newline, becomes one newline)."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def escape_markdown_html(text: str) -> str:
    """`text` as Markdown that holds no HTML: `<`, `>` and the `&` of a character reference
    escaped, everything else as written."""
    return _REFERENCE.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def safe_url(value: object) -> str:
    """`value` as a link target: "#" unless it is an http, https or mailto URL, or a relative
    one. Character references and invisible characters are undone before the scheme is read
    (a browser or Markdown renderer would); what is kept is percent-encoded where a Markdown
    link or an HTML attribute would end early."""
    text = strip_controls(str(value)).strip()
    probe = _INVISIBLE.sub("", html.unescape(text))
    scheme = _SCHEME.match(probe)
    # A colon before any `/`, `?` or `#` makes a scheme; `page.html#a:b` has none.
    if scheme and scheme.group(1).lower() not in SAFE_URL_SCHEMES:
        return "#"
    if not scheme and ":" in probe.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        return "#"  # `x y:z`: not a scheme a browser reads, but not a page of ours either
    return quote(text, safe=_URL_SAFE)


def clean_exported(value: Any) -> Any:
    """`value` with `strip_controls` applied to every string in it (lists and dicts walked)."""
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, list | tuple):
        return [clean_exported(v) for v in value]
    if isinstance(value, dict):
        return {k: clean_exported(v) for k, v in value.items()}
    return value
