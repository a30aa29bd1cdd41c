"""Forward one validated request to a replica and relay the answer, metering as it goes.

Unary answers are relayed whole; the usage object is read from OpenAI JSON bodies.
Streams are relayed chunk by chunk: the first data chunk stamps the time to first
token, the replica's closing ``: paved-usage`` comment is consumed (never reaches the
client) and gives the token counts. If the client goes away the upstream connection
is closed, which makes the replica abort the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from serving.backends.base import USAGE_COMMENT_PREFIX, Receive, Send
from serving.gateway.upstream import UpstreamPool

_PASS_HEADERS = (b"content-type", b"retry-after", b"inference-header-content-length")


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Usage:
        if not isinstance(d, dict):
            return cls()
        details = d.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(d.get("prompt_tokens") or 0),
            completion_tokens=int(d.get("completion_tokens") or 0),
            cached_tokens=int(d.get("cached_tokens") or details.get("cached_tokens") or 0),
        )


@dataclass
class Outcome:
    """What the gateway learned while relaying: for metrics and (later) the cost ledger."""

    status: int
    usage: Usage
    ttft_s: float | None = None
    itl_s: float | None = None
    chunks: int = 0
    client_gone: bool = False


def _relay_headers(
    headers: dict[bytes, bytes], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    out = [(k, headers[k]) for k in _PASS_HEADERS if k in headers]
    return out + extra


async def unary(
    pool: UpstreamPool,
    target: str,
    method: str,
    path: str,
    body: bytes,
    send: Send,
    fwd_headers: list[tuple[bytes, bytes]],
    resp_headers: list[tuple[bytes, bytes]],
    *,
    meter: bool,
) -> Outcome:
    resp = await pool.request(target, method, path, body, fwd_headers)
    usage = Usage()
    if meter and resp.status == 200:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            usage = Usage.from_dict(json.loads(resp.body).get("usage"))
    headers = _relay_headers(resp.headers, resp_headers)
    headers.append((b"content-length", str(len(resp.body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})
    return Outcome(resp.status, usage)


async def stream(
    pool: UpstreamPool,
    target: str,
    path: str,
    body: bytes,
    send: Send,
    receive: Receive,
    fwd_headers: list[tuple[bytes, bytes]],
    resp_headers: list[tuple[bytes, bytes]],
    started: float,
) -> Outcome:
    resp, chunks = await pool.stream(target, path, body, fwd_headers)
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": _relay_headers(resp.headers, resp_headers),
        }
    )
    outcome = Outcome(resp.status, Usage())
    if resp.status != 200:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return outcome

    disconnected = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    watcher = asyncio.get_running_loop().create_task(watch())
    first = last = 0.0
    usage_filter = UsageFilter()
    try:
        async for chunk in chunks:
            if disconnected.is_set():
                outcome.client_gone = True
                break
            now = time.perf_counter()
            if not first:
                first = now
                outcome.ttft_s = now - started
            last = now
            outcome.chunks += 1
            data = usage_filter.feed(chunk)
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        else:
            await send({"type": "http.response.body", "body": usage_filter.flush()})
        outcome.usage = usage_filter.usage or Usage()
    finally:
        watcher.cancel()
        await chunks.aclose()  # type: ignore[attr-defined]
    n = outcome.usage.completion_tokens
    if n > 1 and last > first:
        outcome.itl_s = (last - first) / (n - 1)
    return outcome


class UsageFilter:
    """Removes the ``: paved-usage`` comment event from an SSE byte stream.

    The comment counts only at the start of a line (generated text cannot forge it);
    a tail that may be the start of one is held back until the next chunk decides.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self._held = b""
        self._line_start = True  # the next byte relayed starts a line
        self._drop_newline = False  # the comment's closing blank line is still to come

    def feed(self, chunk: bytes) -> bytes:
        buf = self._held + chunk
        self._held = b""
        if self._drop_newline and buf:
            self._drop_newline = False
            if buf.startswith(b"\n"):
                buf = buf[1:]
        out: list[bytes] = []
        while True:
            i = self._find(buf)
            if i == -1:
                break
            end = buf.find(b"\n", i)
            if end == -1:  # split across chunks: hold from the comment on
                out.append(buf[:i])
                self._held = buf[i:]
                return self._emit(out)
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self.usage = Usage.from_dict(json.loads(buf[i + len(USAGE_COMMENT_PREFIX) : end]))
            out.append(buf[:i])
            tail = buf[end + 1 :]
            self._drop_newline = not tail
            buf = tail[1:] if tail.startswith(b"\n") else tail
            self._line_start = True if not out[-1] else out[-1].endswith(b"\n")
        k = self._partial(buf)
        out.append(buf[: len(buf) - k])
        self._held = buf[len(buf) - k :]
        return self._emit(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _emit(self, parts: list[bytes]) -> bytes:
        data = b"".join(parts)
        if data:
            self._line_start = data.endswith(b"\n")
        return data

    def _find(self, buf: bytes) -> int:
        if self._line_start and buf.startswith(USAGE_COMMENT_PREFIX):
            return 0
        i = buf.find(b"\n" + USAGE_COMMENT_PREFIX)
        return i + 1 if i != -1 else -1

    def _partial(self, buf: bytes) -> int:
        """Length of a tail that could be the beginning of the comment line."""
        for k in range(min(len(USAGE_COMMENT_PREFIX) - 1, len(buf)), 0, -1):
            if not USAGE_COMMENT_PREFIX.startswith(buf[len(buf) - k :]):
                continue
            start = len(buf) - k
            if (start == 0 and self._line_start) or buf[start - 1 : start] == b"\n":
                return k
        return 0
