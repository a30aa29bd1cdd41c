"""What the CLI prints never carries a terminal escape sequence from the data it shows."""

from __future__ import annotations

import pytest
from rich.console import Console

from cli import output as out

pytestmark = pytest.mark.unit

HOSTILE = "ok\x1b]0;owned\x07\x1b[2J\u202e\x9b1m"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _assert_escaped(text: str) -> None:
    assert not any(ch in text for ch in RAW), repr(text)
    for shown in ("\\x1b]0;owned", "\\x1b[2J", "\\u202e"):
        assert shown in text


@pytest.mark.parametrize("console", [out.console, out.err_console], ids=["stdout", "stderr"])
def test_printed_lines_are_escaped(console: Console) -> None:
    with console.capture() as cap:
        console.print(f"reason: {HOSTILE}")
    _assert_escaped(cap.get())


def test_table_and_key_value_cells_are_escaped() -> None:
    with out.console.capture() as cap:
        out.table("history", ["detail"], [(HOSTILE,)])
        out.kv("version", [("description", HOSTILE)])
    _assert_escaped(cap.get())
    assert cap.get().count("\\x07") == 2  # escaped before layout, not stripped
