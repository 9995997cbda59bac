"""Post-processing: each pure step on small hand-written texts, then the whole pipeline."""

from __future__ import annotations

import pytest

from articlegen.generator.postprocess import (
    PostprocessConfig,
    cut_to_sentence,
    find_terminal_loop,
    make_title,
    normalize,
    postprocess,
    remove_terminal_loop,
    split_paragraphs,
    strip_echo,
    words,
)


def test_normalize() -> None:
    raw = "  Cafe\u0301  au\tlait\r\n\r\n\r\n\r\nNext\x07 li\ufffdne  \x00"
    assert normalize(raw) == "Café au lait\n\nNext line"


def test_strip_echo() -> None:
    assert strip_echo("Night trains are", "Night trains are back.") == " back."
    assert strip_echo("Night trains are", "Boats are back.") == "Boats are back."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It rained. the end. the end. the end.", "It rained. the end."),
        ("We went home home home home", "We went home"),
        ("A fine day, a fine day.", "A fine day, a fine day."),  # two short repeats: no loop
        ("and then we sat and then we sat", "and then we sat"),  # four words, twice: a loop
        ("She said very very good things.", "She said very very good things."),
        ("", ""),
    ],
)
def test_remove_terminal_loop(text: str, expected: str) -> None:
    assert remove_terminal_loop(text)[0] == expected


def test_find_terminal_loop_reports_the_shortest_phrase() -> None:
    text = "Intro. la la la la la la"
    assert find_terminal_loop(text) == (len("Intro. la"), "la")
    assert find_terminal_loop("no loop here at all") is None


@pytest.mark.parametrize(
    ("text", "expected", "cut"),
    [
        ("One. Two! Three? And then the", "One. Two! Three?", True),
        ('He said "stop." Then', 'He said "stop."', True),
        ("Complete sentence.", "Complete sentence.", False),
        ("no sentence end at all", "no sentence end at all", False),
        ("Version 2.5 is out. It is", "Version 2.5 is out.", True),
    ],
)
def test_cut_to_sentence(text: str, expected: str, cut: bool) -> None:
    assert cut_to_sentence(text) == (expected, cut)


def test_split_paragraphs() -> None:
    assert split_paragraphs("First.\n\nSecond.\nThird.\n\n\n") == ["First.", "Second.", "Third."]


def test_titles() -> None:
    assert make_title("night trains in europe.", "Whatever.") == "Night trains in europe"
    text = "Trains are back in fashion across the continent and travellers love them a lot. More."
    assert make_title("t", text, "first_sentence", max_words=5) == "Trains are back in fashion…"
    assert make_title("t", "Short one. Next.", "first_sentence") == "Short one"
    assert make_title("fallback topic", "", "first_sentence") == "Fallback topic"


def test_words() -> None:
    assert words("Don\u2019t stop\u2014it's 2 o'clock!") == [
        "don\u2019t",
        "stop",
        "it's",
        "2",
        "o'clock",
    ]


def test_pipeline() -> None:
    raw = " back in fashion.\nTravellers love them. Love them. Love them. Love them."
    done = postprocess(
        raw,
        prompt="Night trains are",
        topic="night trains",
        config=PostprocessConfig(keep_prompt_as_lead=True),
    )
    assert done.paragraphs == ("Night trains are back in fashion.", "Travellers love them.")
    assert done.body == "Night trains are back in fashion.\n\nTravellers love them."
    assert done.title == "Night trains"
    assert done.word_count == 9
    assert done.loop_phrase == "love them."
    assert done.cut_incomplete is False

    plain = postprocess(" and more. Then", prompt="P", topic="x", config=PostprocessConfig())
    assert (plain.body, plain.cut_incomplete) == ("and more.", True)


@pytest.mark.parametrize(
    ("text", "phrase", "kept"),
    [
        ("Intro. Buy now. Buy now. Buy now. Bu", "buy now.", "Intro. Buy now."),
        ("Intro. we go we go we go we g", "go we", "Intro. we go we"),
    ],
)
def test_a_loop_cut_off_mid_word_is_still_a_loop(text: str, phrase: str, kept: str) -> None:
    loop = find_terminal_loop(text)
    assert loop is not None
    assert loop[1] == phrase
    assert remove_terminal_loop(text)[0] == kept
    done = postprocess(text, prompt="", topic="t", config=PostprocessConfig())
    assert done.loop_phrase == phrase
