"""Free text a user types or the platform prints: refused at input, escaped at output.

Three jobs, one place:

- :func:`quote` is how an error message shows an offending value: ``repr`` of at most
  a short prefix, so a 1 MB field never comes back as a 1 MB error.
- :func:`validate_free_text` refuses control characters (terminal escape sequences,
  bidirectional overrides) and over-long values in free text such as an alias reason.
- :func:`printable` escapes whatever control characters reach the terminal anyway
  (text written to the registry around Pavedpath), so printing never runs an escape.
"""

from __future__ import annotations

import unicodedata

from paved.errors import InvalidInput

MAX_QUOTE_CHARS = 80
MAX_REASON_CHARS = 1024

# Cc: C0/C1 controls (ESC, BEL, CSI ...); Cf: format characters (bidi overrides,
# zero-width joiners); Zl/Zp: line and paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_KEEP = frozenset("\n\t")


def _is_control(ch: str) -> bool:
    return ch not in _KEEP and unicodedata.category(ch) in _CONTROL_CATEGORIES


def quote(value: object, limit: int = MAX_QUOTE_CHARS) -> str:
    """``value`` as an error message quotes it: ``repr`` of at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[: max(limit - 3, 0)]) + f"... ({len(text)} characters)"
    return repr(text)


def has_control(text: str, *, allow_newlines: bool = False) -> bool:
    """Whether ``text`` holds a character that could steer a terminal."""
    return any(_is_control(ch) or (ch == "\n" and not allow_newlines) for ch in text)


def validate_free_text(
    value: object, kind: str, *, max_length: int = MAX_REASON_CHARS, multiline: bool = False
) -> str:
    """Accept free text (a reason, a description) without control characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{kind} must be a string, got {type(value).__name__}", rule="type")
    if len(value) > max_length:
        raise InvalidInput(
            f"{kind} is {len(value)} characters; the limit is {max_length}", rule="max_length"
        )
    if has_control(value, allow_newlines=multiline):
        raise InvalidInput(
            f"{kind} {quote(value)} contains control characters (terminal escapes, "
            "bidirectional overrides or line breaks are not allowed)",
            rule="no_control",
        )
    return value


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), never run."""
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(_escape(ch) if _is_control(ch) else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
