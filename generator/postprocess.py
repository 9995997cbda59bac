"""From raw model text to an article: pure functions, applied in `postprocess` in this order.

1. put the prompt back as the lead when asked (the model continues it, often mid-sentence);
2. normalise Unicode (NFC) and whitespace, drop control characters;
3. remove a terminal repetition loop ("the end. the end. the end.") keeping one occurrence;
4. cut after the last complete sentence, so the article does not stop mid-thought;
5. split paragraphs, derive a title, count words.

Flags such as `too_short` are judged in `generator.metrics`, against configurable thresholds.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PostprocessConfig",
    "ProcessedText",
    "cut_to_sentence",
    "find_terminal_loop",
    "make_title",
    "normalize",
    "postprocess",
    "remove_terminal_loop",
    "split_paragraphs",
    "strip_echo",
    "words",
]

_WORD = re.compile(r"\S+")
_COUNTED_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# A sentence ends at . ! ? or … , possibly followed by closing quotes or brackets.
_SENTENCE_END = re.compile("[.!?\u2026][\"'\u201d\u2019)\\]]*(?=\\s|$)")
# Control characters, and U+FFFD, which byte-level BPE leaves where it cut a character in two.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


class PostprocessConfig(BaseModel):
    """How raw text becomes an article."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_prompt_as_lead: bool = Field(
        default=False,
        description="Start the body with the prompt: useful when prompts are written as the "
        "article's opening words.",
    )
    title_from: Literal["topic", "first_sentence"] = Field(
        default="topic",
        description="Title from the prompt's topic (the client's own words, so the default) or "
        "from the article's first sentence.",
    )
    max_title_words: int = Field(
        default=14, ge=3, le=50, description="A first-sentence title is cut to this many words."
    )


@dataclass(frozen=True)
class ProcessedText:
    """An article's text after post-processing."""

    title: str
    body: str  # paragraphs separated by one blank line
    paragraphs: tuple[str, ...]
    word_count: int
    loop_phrase: str | None  # the repeated phrase removed from the end, if any
    cut_incomplete: bool  # a trailing incomplete sentence was cut off


def words(text: str) -> list[str]:
    """Lower-cased words (letters and digits, inner apostrophes kept): what metrics count."""
    return [w.lower() for w in _COUNTED_WORD.findall(text)]


def strip_echo(prompt: str, text: str) -> str:
    """`text` without a leading copy of `prompt` (pipelines that echo the prompt return it)."""
    return text[len(prompt) :] if prompt and text.startswith(prompt) else text


def normalize(text: str) -> str:
    """NFC Unicode, Unix newlines, no control characters, single spaces, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Controls go before composing: one between a letter and its accent ("e\x00\u0301") keeps
    # NFC from joining them, and dropped after it would leave text a second pass changes.
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text.replace("\t", " ")))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def find_terminal_loop(text: str, max_phrase_words: int = 30) -> tuple[int, str] | None:
    """Where a phrase repeated back-to-back at the very end begins its repeats, and the phrase.

    The shortest looping phrase wins. A phrase of one to three words must occur three times in a
    row (a doubled word can be deliberate); a longer one twice. Text cut off by a token limit
    often ends mid-repeat ("Buy now. Buy now. Buy now. Bu"), so when the whole text shows no
    loop, it is tried again without its last word. Returns (character offset just after the
    first occurrence, the phrase), or None.
    """
    spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    return _loop_in(spans, max_phrase_words) or _loop_in(spans[:-1], max_phrase_words)


def _loop_in(spans: list[tuple[int, int, str]], max_phrase_words: int) -> tuple[int, str] | None:
    tokens = [t for _, _, t in spans]
    for n in range(1, min(max_phrase_words, len(tokens) // 2) + 1):
        phrase = tokens[-n:]
        repeats = 1
        count = len(tokens)
        while (
            count - n * (repeats + 1) >= 0
            and tokens[count - n * (repeats + 1) : count - n * repeats] == phrase
        ):
            repeats += 1
        if repeats >= (3 if n <= 3 else 2):
            first_end = count - n * (repeats - 1) - 1  # last token of the first occurrence
            return spans[first_end][1], " ".join(phrase)
    return None


def remove_terminal_loop(text: str) -> tuple[str, str | None]:
    """`text` with a terminal loop reduced to its first occurrence, and the looping phrase."""
    loop = find_terminal_loop(text)
    if loop is None:
        return text, None
    end, phrase = loop
    return text[:end].rstrip(), phrase


def cut_to_sentence(text: str) -> tuple[str, bool]:
    """`text` up to its last complete sentence, and whether anything was cut.

    Text with no sentence end at all is kept whole: cutting would leave nothing.
    """
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text, False
    end = ends[-1].end()
    return text[:end], bool(text[end:].strip())


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs: the model marks them with newlines, one or more."""
    return [p.strip() for p in re.split(r"\n+", text) if p.strip()]


def make_title(topic: str, text: str, source: str = "topic", max_words: int = 14) -> str:
    """A title from the topic, or from the first sentence of `text` (falling back to the topic)."""
    if source == "first_sentence":
        first = _SENTENCE_END.search(text)
        sentence = text[: first.end()] if first else text
        tokens = sentence.split()
        if tokens:
            title = " ".join(tokens[:max_words]).rstrip(".!?…,;:")
            return title + ("…" if len(tokens) > max_words else "")
    topic = " ".join(topic.split()).rstrip(".")
    return topic[:1].upper() + topic[1:]


def postprocess(
    continuation: str, *, prompt: str, topic: str, config: PostprocessConfig
) -> ProcessedText:
    """Turn a model's continuation of `prompt` into a titled article (steps in the module doc)."""
    text = prompt + continuation if config.keep_prompt_as_lead else continuation
    text = normalize(text)
    text, loop_phrase = remove_terminal_loop(text)
    text, cut = cut_to_sentence(text)
    paragraphs = split_paragraphs(text)
    body = "\n\n".join(paragraphs)
    count = len(words(body))
    return ProcessedText(
        title=make_title(topic, body, config.title_from, config.max_title_words),
        body=body,
        paragraphs=tuple(paragraphs),
        word_count=count,
        loop_phrase=loop_phrase,
        cut_incomplete=cut,
    )
