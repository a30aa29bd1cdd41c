"""The gateway's SSE filter: the usage comment leaves the stream, exactly, however split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.gateway.forward import DONE, Usage, UsageFilter, has_content
from serving.headers import USAGE_COMMENT_PREFIX

pytestmark = pytest.mark.unit

# Generated text may contain anything, the comment's own prefix and blank lines included:
# inside the JSON of a data event it cannot end an event or start a comment line.
pieces = ["a", "é", " ", "\n", ":", "\n\n", ": paved-usage ", "data: [DONE]"]
texts = st.lists(st.sampled_from(pieces), max_size=8).map("".join)
usages = st.builds(
    Usage,
    prompt_tokens=st.integers(0, 10**9),
    completion_tokens=st.integers(0, 10**9),
    cached_tokens=st.integers(0, 10**9),
)


def _data(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "text": text}]}).encode() + b"\n\n"


def _comment(u: Usage) -> bytes:
    body = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
    body["cached_tokens"] = u.cached_tokens
    return USAGE_COMMENT_PREFIX + json.dumps(body).encode() + b"\n\n"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _run(chunks: list[bytes]) -> tuple[bytes, UsageFilter]:
    f = UsageFilter()
    out = b"".join(f.feed(c) for c in chunks) + f.flush()
    return out, f


@given(
    before=st.lists(texts, max_size=6),
    after=st.lists(texts, max_size=2),
    usage=usages,
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_output_is_the_input_minus_the_comment_and_the_usage_is_exact(
    before: list[str], after: list[str], usage: Usage, cuts: list[int]
) -> None:
    head = b"".join(_data(t) for t in before)
    tail = b"".join(_data(t) for t in after) + DONE
    stream = head + _comment(usage) + tail
    out, f = _run(_split(stream, cuts))
    assert out == head + tail
    assert f.usage == usage
    assert f.done


@given(before=st.lists(texts, max_size=6), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_a_stream_without_the_comment_passes_unchanged(before: list[str], cuts: list[int]) -> None:
    stream = b"".join(_data(t) for t in before) + DONE
    out, f = _run(_split(stream, cuts))
    assert out == stream
    assert f.usage is None


@given(events=st.lists(texts, min_size=1, max_size=6), cut=st.integers(1, 10_000))
def test_only_whole_events_leave_before_the_end(events: list[str], cut: int) -> None:
    encoded = [_data(t) for t in events]
    stream = b"".join(encoded)
    broken = stream[: cut % len(stream)]  # the replica broke off here
    out = UsageFilter().feed(broken)
    assert out in {b"".join(encoded[:k]) for k in range(len(encoded) + 1)}


def test_the_comment_at_the_very_end_without_its_blank_line_is_still_taken() -> None:
    out, f = _run([_data("x"), USAGE_COMMENT_PREFIX + b'{"completion_tokens": 2}\n'])
    assert out == _data("x")
    assert f.usage == Usage(completion_tokens=2)


def test_the_role_only_chat_chunk_is_not_content() -> None:
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    token = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    assert not has_content(role)
    assert has_content(token)
    assert has_content(role + token)
    assert has_content(_data("a"))
    assert not has_content(_data(""))
    assert not has_content(DONE)
