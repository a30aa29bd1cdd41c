"""Forward one validated request to a replica and relay the answer, metering as it goes.

Unary answers are relayed whole; the usage object is read from OpenAI JSON bodies.
Streams are relayed event by event (:class:`UsageFilter`): the first event with
content stamps the time to first token (for chat, not the role-only first chunk), the
replica's closing ``: paved-usage`` comment is consumed (never reaches the client) and
gives the token counts.

However a request ends, the client is told properly and nothing is left running:

- the replica breaks off or stalls (nothing for ``idle_timeout_s``) mid-stream: the
  client's stream ends with an OpenAI error event and ``data: [DONE]``;
- the client disconnects (streamed or not): the request returns at once, so its
  admission slot is free, and the upstream connection is closed, which makes the
  replica abort the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from paved.errors import BackendError, PavedError, UpstreamTimeout
from serving.asgi import Receive, Send
from serving.gateway.upstream import UpstreamBody, UpstreamPool
from serving.headers import USAGE_COMMENT_PREFIX
from serving.protocol.openai_responses import error_response

_PASS_HEADERS = (b"content-type", b"retry-after", b"inference-header-content-length")
DONE = b"data: [DONE]\n\n"
CLIENT_CLOSED = 499  # nginx's "client closed request": what metrics record for it


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
    """What the gateway learned while relaying: for metrics and (later) the cost ledger.

    ``status`` is what the request came to: the replica's status, the error a stream
    ended with (its 200 was sent already), or 499 when the client left.
    """

    status: int
    usage: Usage
    ttft_s: float | None = None
    itl_s: float | None = None
    chunks: int = 0
    client_gone: bool = False
    usage_known: bool = False  # the replica reported the counts (else they are zero)
    replica_ttft_s: float | None = None  # the replica's time to first token, if it said
    target: str = ""  # the replica that answered
    upstream_id: str = ""  # the id it was sent (x-paved-upstream-id), for aborted_usage


async def aborted_usage(
    pool: UpstreamPool,
    target: str,
    upstream_id: str,
    headers: list[tuple[bytes, bytes]],
    *,
    wait_s: float = 5.0,
) -> Usage | None:
    """What a replica generated for a stream whose client left, up to the abort.

    The upstream connection was closed to abort the generation, so the usage comment
    never came; the replica keeps the count under ``upstream_id`` (see
    ``serving/backends/llm_usage.py``). A GET: asking twice runs nothing twice.
    """
    try:
        async with asyncio.timeout(wait_s):
            resp = await pool.request(target, "GET", f"/paved/usage/{upstream_id}", b"", headers)
    except (PavedError, TimeoutError, OSError):
        return None
    if resp.status != 200:
        return None
    try:
        return Usage.from_dict(json.loads(resp.body))
    except (ValueError, TypeError, AttributeError):
        return None


class ClientWatch:
    """Cancels the forwarding task when the client disconnects (ASGI ``http.disconnect``).

    Only once the request body has been read: every later ``receive()`` then waits
    for the disconnect. Cancelling the task cancels whatever it awaits (the upstream
    response, a chunk, a send), and the upstream pool closes that connection.
    """

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.gone = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.task.cancel()

    def stop(self) -> None:
        """Stop watching; call before the last send (a complete response reads as a
        disconnect in uvicorn)."""
        self._watcher.cancel()

    def swallow(self) -> bool:
        """In ``except CancelledError``: True (and the cancel undone) if the client left."""
        self.stop()
        if not self.gone:
            return False
        self.task.uncancel()
        return True


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
    receive: Receive,
    fwd_headers: list[tuple[bytes, bytes]],
    resp_headers: list[tuple[bytes, bytes]],
    *,
    meter: bool,
) -> Outcome:
    watch = ClientWatch(receive)
    try:
        resp = await pool.request(target, method, path, body, fwd_headers)
    except asyncio.CancelledError:
        if watch.swallow():
            return Outcome(CLIENT_CLOSED, Usage(), client_gone=True)
        raise
    finally:
        watch.stop()
    outcome = Outcome(resp.status, Usage())
    if meter and resp.status == 200:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            outcome.usage = Usage.from_dict(json.loads(resp.body).get("usage"))
            outcome.usage_known = True
    headers = _relay_headers(resp.headers, resp_headers)
    headers.append((b"content-length", str(len(resp.body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})
    return outcome


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
    *,
    idle_timeout_s: float,
) -> Outcome:
    watch = ClientWatch(receive)
    upstream: UpstreamBody | None = None
    outcome = Outcome(200, Usage())
    try:
        resp, upstream = await pool.stream(target, path, body, fwd_headers)
        outcome.status = resp.status
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": _relay_headers(resp.headers, resp_headers),
            }
        )
        if resp.status != 200:  # a refusal: a small JSON body, relayed as it comes
            with contextlib.suppress(BackendError):
                async for chunk in upstream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            await _relay_events(upstream, send, outcome, started, idle_timeout_s)
    except BaseException as exc:  # the client left (cancelled), or the relay failed
        if upstream is not None:
            upstream.close()  # the replica sees the disconnect and aborts the generation
        if isinstance(exc, asyncio.CancelledError) and watch.swallow():
            outcome.status = CLIENT_CLOSED
            outcome.client_gone = True
            return outcome
        raise
    finally:
        watch.stop()
    await send({"type": "http.response.body", "body": b""})
    return outcome


async def _relay_events(
    upstream: UpstreamBody, send: Send, outcome: Outcome, started: float, idle_timeout_s: float
) -> None:
    """Relay a 200 event stream; a replica that breaks off or stalls ends it with an error."""
    usage_filter = UsageFilter()
    first = last = 0.0
    error: PavedError | None = None
    try:
        while True:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await upstream.read()
            if chunk is None:
                break
            outcome.chunks += 1
            data = usage_filter.feed(chunk)
            if not data:
                continue
            now = time.perf_counter()
            if not first and has_content(data):
                first = now
                outcome.ttft_s = now - started
            last = now
            await send({"type": "http.response.body", "body": data, "more_body": True})
    except TimeoutError:
        upstream.close()
        error = UpstreamTimeout(
            f"the model replica sent nothing for {idle_timeout_s:g}s; the stream was ended",
            rule="stream_idle_timeout",
        )
    except BackendError as exc:
        error = exc
    if error is None:
        tail = usage_filter.flush()
    else:
        outcome.status = error.status
        tail = sse_error(error) + (b"" if usage_filter.done else DONE)
    if tail:
        await send({"type": "http.response.body", "body": tail, "more_body": True})
    if usage_filter.usage is not None:
        outcome.usage = usage_filter.usage
        outcome.usage_known = True
        outcome.replica_ttft_s = usage_filter.first_token_s
    per_sequence = outcome.usage.completion_tokens / usage_filter.sequences
    if per_sequence > 1 and first and last > first:
        outcome.itl_s = (last - first) / (per_sequence - 1)


def sse_error(exc: PavedError) -> bytes:
    """An error as an SSE event in OpenAI's shape: ``data: {"error": {...}}``."""
    return b"data: " + error_response(exc).model_dump_json().encode() + b"\n\n"


def has_content(events: bytes) -> bool:
    """Whether any event carries generated text (a chat delta's content or a completion's
    text); the role-only first chunk of a chat stream does not."""
    for event in events.split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        try:
            doc = json.loads(event[6:])
        except ValueError:
            continue
        for choice in doc.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if choice.get("text") or (isinstance(delta, dict) and delta.get("content")):
                return True
    return False


class UsageFilter:
    """Removes the ``: paved-usage`` comment event from an SSE byte stream.

    Relays whole events only (up to the last blank line seen), so a stream broken off
    mid-event never hands the client half an event. The comment counts only as an
    event of its own (generated text is inside JSON strings and cannot forge one).
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.first_token_s: float | None = None  # the replica's, when its comment says
        self.sequences = 1  # generated side by side, when its comment says
        self.done = False  # ``data: [DONE]`` has been relayed
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        buf = self._held + chunk if self._held else chunk
        end = buf.rfind(b"\n\n")
        if end == -1:
            self._held = buf
            return b""
        end += 2
        events, self._held = buf[:end], buf[end:]
        if USAGE_COMMENT_PREFIX in events:
            kept = [e for e in events.split(b"\n\n") if not self._take_usage(e)]
            events = b"\n\n".join(kept)
        if events.endswith(DONE):
            self.done = True
        return events

    def flush(self) -> bytes:
        """What is left when the upstream ended (an event without its blank line)."""
        held, self._held = self._held, b""
        if self._take_usage(held.rstrip(b"\n")):
            return b""
        return held

    def _take_usage(self, event: bytes) -> bool:
        if not event.startswith(USAGE_COMMENT_PREFIX):
            return False
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            report = json.loads(event[len(USAGE_COMMENT_PREFIX) :])
            self.usage = Usage.from_dict(report)
            first = report.get("first_token_s")
            if isinstance(first, int | float) and first >= 0:
                self.first_token_s = float(first)
            sequences = report.get("sequences")
            if isinstance(sequences, int) and 1 <= sequences <= 1 << 20:
                self.sequences = sequences
        return True
