"""Word-level differences between two texts, laid out side by side.

Words are compared, not characters or lines: an editor reads "three words changed in the second
paragraph". Paragraph breaks count as tokens of their own, so a moved break shows too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

__all__ = ["Segment", "SideBySide", "word_diff"]

_TOKENS = re.compile(r"\n\s*\n|\S+")
PARAGRAPH = "\n\n"


@dataclass(frozen=True)
class Segment:
    """A run of words on one side: the same on both sides, only on the left (removed), or
    only on the right (added)."""

    kind: Literal["same", "removed", "added"]
    text: str


@dataclass(frozen=True)
class SideBySide:
    """The left text and the right text as segments, and how many words each side changed."""

    left: list[Segment]
    right: list[Segment]
    removed: int
    added: int

    @property
    def identical(self) -> bool:
        """Whether the two texts have the same words."""
        return not (self.removed or self.added)


def _tokens(text: str) -> list[str]:
    return [PARAGRAPH if t.isspace() else t for t in _TOKENS.findall(text)]


def _join(tokens: list[str]) -> str:
    return " ".join(tokens).replace(f" {PARAGRAPH} ", PARAGRAPH).replace(PARAGRAPH + " ", PARAGRAPH)


def word_diff(left: str, right: str) -> SideBySide:
    """The word-level differences from `left` to `right`."""
    a, b = _tokens(left), _tokens(right)
    lefts: list[Segment] = []
    rights: list[Segment] = []
    removed = added = 0
    for op, i1, i2, j1, j2 in SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            lefts.append(Segment("same", _join(a[i1:i2])))
            rights.append(Segment("same", _join(b[j1:j2])))
            continue
        if i2 > i1:
            lefts.append(Segment("removed", _join(a[i1:i2])))
            removed += sum(t != PARAGRAPH for t in a[i1:i2])
        if j2 > j1:
            rights.append(Segment("added", _join(b[j1:j2])))
            added += sum(t != PARAGRAPH for t in b[j1:j2])
    return SideBySide(lefts, rights, removed, added)
