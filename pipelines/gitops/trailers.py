"""Commit messages that carry the audit record as ``Paved-*`` Git trailers.

A trailer block is the last paragraph of a message, one ``Key: value`` per line, so
``git log --format=%(trailers)`` and ``git interpret-trailers`` read it back without a
parser of our own. Values are folded to one line and cut short, so a gate summary or
an identity can never break the block or forge another trailer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

ACTION = "Paved-Action"
PROMOTION_ID = "Paved-Promotion-Id"
ACTOR = "Paved-Actor"
ACTOR_ROLES = "Paved-Actor-Roles"
PROMOTED_BY = "Paved-Promoted-By"
MODEL = "Paved-Model"
ENDPOINT = "Paved-Endpoint"
ENV = "Paved-Env"
FROM_VERSION = "Paved-From-Version"
TO_VERSION = "Paved-To-Version"
MODE = "Paved-Mode"
GATE = "Paved-Gate"
REVERTS = "Paved-Reverts"

_WS = re.compile(r"\s+")
MAX_VALUE = 240


def one_line(text: object, limit: int = MAX_VALUE) -> str:
    """``text`` on one line, whitespace folded, at most ``limit`` characters."""
    flat = _WS.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def compose(subject: str, body: Sequence[str], trailers: Mapping[str, object | None]) -> str:
    """A commit message: subject, body paragraphs, then the trailer block.

    Trailers whose value is None are left out; the rest keep the order given.
    """
    parts = [one_line(subject, 120)]
    parts += [p.strip() for p in body if p.strip()]
    block = [f"{key}: {one_line(value)}" for key, value in trailers.items() if value is not None]
    if block:
        parts.append("\n".join(block))
    return "\n\n".join(parts) + "\n"
