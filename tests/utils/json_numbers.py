"""Hypothesis strategies: OpenAI request bodies with arbitrary JSON numbers in them.

Shared by the unit test of the request models and the replica test against the real
engine: every numeric field of a completion or chat request gets any JSON number
(huge or negative integers, the 32- and 64-bit edges, subnormal, infinite and NaN
floats), and ``logit_bias`` gets arbitrary keys, so a test can check that no client
number is answered with a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

EDGES = [
    0, 1, -1, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64,
    10**40, 0.5, -0.0, 5e-324, 1e-300, 1.0000001, 2.0000001, 100.0, 100.5, 1e308,
]  # fmt: skip

NUMBER_FIELDS = [
    "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "presence_penalty",
    "frequency_penalty", "best_of",
]  # fmt: skip
COMPLETION_ONLY = ["logprobs"]
CHAT_ONLY = ["max_completion_tokens", "top_logprobs"]


def json_numbers() -> st.SearchStrategy[int | float]:
    """Any number a JSON document can carry (``NaN`` and ``Infinity`` as Python writes them)."""
    return st.one_of(
        st.sampled_from(EDGES),
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=-3, max_value=3),
    )


def token_keys() -> st.SearchStrategy[str]:
    """``logit_bias`` keys: plausible token ids, Unicode digits and any text."""
    return st.one_of(
        st.integers(min_value=0, max_value=2**40).map(str),
        st.sampled_from(["\u00b2", "\u0663", "\uff11", "-1", " 1", "1.0", "", "0" * 12, "1e3"]),
        st.text(max_size=12),
    )


@st.composite
def numeric_fields(draw: st.DrawFn, *, chat: bool) -> dict[str, Any]:
    """Some numeric fields of a request, each any JSON number."""
    names = NUMBER_FIELDS + (CHAT_ONLY if chat else COMPLETION_ONLY)
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    fields: dict[str, Any] = {name: draw(json_numbers()) for name in chosen}
    if chat and "top_logprobs" in fields:
        fields["logprobs"] = True
    if draw(st.booleans()):
        fields["logit_bias"] = draw(
            st.dictionaries(token_keys(), json_numbers(), min_size=1, max_size=3)
        )
    return fields


def body(base: dict[str, Any], fields: dict[str, Any]) -> bytes:
    """The JSON body, with non-finite floats written as ``NaN``/``Infinity`` literals."""
    return json.dumps(base | fields, allow_nan=True).encode()
