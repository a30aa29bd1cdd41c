"""Free text: bounded quoting, control characters refused at input and escaped at output."""

from __future__ import annotations

import pytest

from paved.errors import MAX_MESSAGE_CHARS, InvalidInput, NotFound
from paved.names import validate_name
from paved.text import printable, quote, validate_free_text

pytestmark = pytest.mark.unit


def test_quote_shows_a_bounded_prefix() -> None:
    assert quote("abc") == "'abc'"
    shown = quote("x" * 1_000_000)
    assert len(shown) < 120
    assert shown.endswith("(1000000 characters)")


def test_every_error_message_is_bounded() -> None:
    err = NotFound("no such thing: " + "y" * 1_000_000)
    assert len(err.message) <= MAX_MESSAGE_CHARS
    assert len(str(err)) <= MAX_MESSAGE_CHARS
    assert len(err.to_dict()["message"]) <= MAX_MESSAGE_CHARS


def test_a_huge_name_comes_back_as_a_short_error() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_name("a/" + "b" * 1_000_000)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    "text",
    ["\x1b[2J", "title\x1b]0;pwned\x07", "\x9b31m", "abc\u202edef", "a\u2028b", "a\rb", "a\nb"],
)
def test_control_characters_are_refused_in_free_text(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_free_text(text, "reason")
    assert info.value.rule == "no_control"


def test_plain_free_text_is_accepted_and_long_text_refused() -> None:
    assert validate_free_text("rolled back: p95 up 20 % — see #42", "reason")
    assert validate_free_text("two\nlines", "description", multiline=True)
    with pytest.raises(InvalidInput) as info:
        validate_free_text("x" * 2000, "reason")
    assert info.value.rule == "max_length"


def test_printable_escapes_what_would_steer_a_terminal() -> None:
    assert printable("plain, ünïcode ✓\tand\nlines") == "plain, ünïcode ✓\tand\nlines"
    assert printable("a\x1b[31mb\x07") == "a\\x1b[31mb\\x07"
    assert printable("x\u202ey\x9b") == "x\\u202ey\\x9b"
    assert "\x1b" not in printable("\x1b" * 10)
