"""Real servers for tests: uvicorn in a background thread, and a trivial replica.

The trivial replica answers like a Pavedpath model replica (OpenAI JSON and SSE with
the ``: paved-usage`` comment, v2 JSON) without a model, so gateway behaviour (auth,
routing, limits, admission, metering) is tested fast; the real replicas have their own
tests and the e2e test runs the whole stack.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not in the main thread
        return None


class UvicornThread:
    """Serve an ASGI app on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            http="httptools",
            loop="uvloop",
            **config,
        )
        self.server = _Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


async def trivial_replica(scope: Any, receive: Any, send: Any) -> None:
    """Answers like a model replica; echoes the x-paved-* headers it received."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    hdrs = {k.decode(): v.decode() for k, v in scope["headers"]}
    if scope["path"].startswith("/paved/usage/"):  # what a stream did before its client left
        usage = REPLICA_USAGE.pop(scope["path"].rsplit("/", 1)[1], None)
        await _send(send, 200 if usage else 404, json.dumps(usage).encode(), b"application/json")
        return
    doc = json.loads(body) if body else {}
    tag = str(doc.get("tag", ""))
    REPLICA_EVENTS[f"{tag}:request"] += 1
    if "sleep" in doc:
        try:
            await asyncio.wait_for(_disconnected(receive), float(doc["sleep"]))
        except TimeoutError:
            pass
        else:
            REPLICA_EVENTS[f"{tag}:disconnect"] += 1
            return
    if doc.get("die"):  # a head promising a body, then the connection breaks off
        head = [(b"content-type", b"application/json"), (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ReplicaDied(tag)
    seen = json.dumps({k: v for k, v in hdrs.items() if k.startswith("x-paved")}).encode()
    if scope["path"].startswith("/v2/"):
        v2 = json.dumps({"model_name": "t", "outputs": [], "seen": json.loads(seen)}).encode()
        await _send(send, 200, v2, b"application/json")
    elif doc.get("stream"):
        await _stream(send, receive, scope["headers"], scope["path"], doc, json.loads(seen))
    else:
        out = dict(COMPLETION, seen=json.loads(seen))
        await _send(send, 200, json.dumps(out).encode(), b"application/json")


REPLICA_EVENTS: collections.Counter[str] = collections.Counter()
"""What the trivial replica saw, by the request's ``tag``: ``TAG:request`` per request
received, ``TAG:disconnect`` per client that left while it slept or stalled."""


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


REPLICA_USAGE: dict[str, dict[str, int]] = {}
"""Usage of streams whose client left, by upstream id, until the gateway collects it."""


class ReplicaDied(Exception):
    """Raised by the trivial replica to break a stream off mid-way (uvicorn drops it)."""


async def _stream(
    send: Any, receive: Any, scope_headers: Any, path: str, doc: dict[str, Any], seen: Any
) -> None:
    """An SSE answer: chat chunks (the role first) on the chat path, else completions.

    Knobs in the request body: ``chunks`` (content chunks, default 3), ``gap`` (seconds
    before each content chunk), ``stall_after`` (after that many content chunks, wait
    for the client to leave, recorded in :data:`REPLICA_EVENTS` under ``tag``),
    ``die_after`` (after that many, break the connection off), ``fail_after`` (after that
    many, end as a replica whose engine failed does: an error event, usage, ``[DONE]``),
    ``sequences`` (report that many generated side by side, each chunk a token of each).
    A stream whose client left records its usage under ``x-paved-upstream-id``, for
    ``GET /paved/usage/{id}``.
    """
    chat = path == "/v1/chat/completions"
    n = int(doc.get("chunks", 3))
    tag = str(doc.get("tag", ""))
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def event(payload: dict[str, Any]) -> None:
        data = b"data: " + json.dumps(payload).encode() + b"\n\n"
        await send({"type": "http.response.body", "more_body": True, "body": data})

    upstream_id = dict(scope_headers).get(b"x-paved-upstream-id", b"").decode()
    if chat:
        await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for i in range(n):
        if i == doc.get("stall_after"):
            await _disconnected(receive)
            REPLICA_EVENTS[f"{tag}:disconnect"] += 1
            if upstream_id:  # the engine generated i tokens up to the abort
                REPLICA_USAGE[upstream_id] = {"prompt_tokens": 4, "completion_tokens": i}
            return
        if i == doc.get("die_after"):
            raise ReplicaDied(tag)
        if i == doc.get("fail_after"):  # the engine failed: an error event, usage, [DONE]
            await event({"error": {"message": "generation failed", "type": "server_error"}})
            n = i
            break
        if doc.get("gap"):
            await asyncio.sleep(float(doc["gap"]))
        choice = (
            {"index": 0, "delta": {"content": f"t{i}"}} if chat else {"index": 0, "text": f"t{i}"}
        )
        await event({"choices": [choice], "seen": seen})
    seqs = int(doc.get("sequences", 1))  # as if generated side by side, a token each
    report = {"prompt_tokens": 4, "completion_tokens": n * seqs} | (
        {"sequences": seqs} if seqs > 1 else {}
    )
    usage = b": paved-usage " + json.dumps(report).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": usage, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send(send: Any, status: int, body: bytes, ctype: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
