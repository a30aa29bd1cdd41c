"""The shared raw-ASGI helpers: the body cap, one Retry-After rounding, error headers."""

from __future__ import annotations

from typing import Any

import pytest

from paved.errors import LimitExceeded, MethodNotAllowed, NotFound, RateLimited, Unavailable
from serving import asgi

pytestmark = pytest.mark.unit


def _receiver(*messages: dict[str, Any]) -> asgi.Receive:
    queue = list(messages)

    async def receive() -> asgi.Message:
        return queue.pop(0)

    return receive


def _chunk(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_read_body_joins_chunks_up_to_the_limit() -> None:
    receive = _receiver(_chunk(b"ab", True), _chunk(b"cd", False))
    assert await asgi.read_body(receive, 4) == b"abcd"


async def test_read_body_refuses_a_body_over_the_limit() -> None:
    receive = _receiver(_chunk(b"abc", True), _chunk(b"de", False))
    with pytest.raises(LimitExceeded) as refused:
        await asgi.read_body(receive, 4)
    assert refused.value.rule == "max_body_bytes"


async def test_read_body_refuses_a_declared_length_before_reading() -> None:
    async def never() -> asgi.Message:
        raise AssertionError("the body was read")

    with pytest.raises(LimitExceeded):
        await asgi.read_body(never, 4, declared=b"5")


async def test_read_body_raises_when_the_client_left() -> None:
    with pytest.raises(ConnectionAbortedError):
        await asgi.read_body(_receiver({"type": "http.disconnect"}), 4)


@pytest.mark.parametrize(("seconds", "header"), [(0, b"1"), (0.2, b"1"), (1, b"1"), (1.5, b"2")])
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(
    seconds: float, header: bytes
) -> None:
    assert asgi.retry_after(seconds) == header


def test_error_headers() -> None:
    assert asgi.error_headers(Unavailable("x", retry_after_s=2)) == [(b"retry-after", b"2")]
    assert asgi.error_headers(RateLimited("x", retry_after_s=0.5)) == [(b"retry-after", b"1")]
    assert asgi.error_headers(MethodNotAllowed("GET", "POST")) == [(b"allow", b"POST")]
    assert asgi.error_headers(NotFound("x")) == []


async def test_lifespan_runs_startup_and_shutdown() -> None:
    ran: list[str] = []
    sent: list[str] = []

    async def shutdown() -> None:
        ran.append("shutdown")

    async def send(message: asgi.Message) -> None:
        sent.append(message["type"])

    receive = _receiver({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    await asgi.lifespan(receive, send, startup=lambda: ran.append("startup"), shutdown=shutdown)
    assert ran == ["startup", "shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
