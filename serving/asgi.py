"""Raw-ASGI helpers shared by the gateway and the replica apps (no framework per request).

The ASGI types, the request body read under a size cap, header lookup, JSON and error
responses in each protocol's shape with the one ``Retry-After`` rounding, and the
lifespan loop. The gateway (``serving.gateway.app``), the v2 replica
(``serving.backends.tabular_app``) and the OpenAI replica (``serving.backends.llm_app``,
a Starlette app, for its body cap and error rendering) all use these, so a refusal looks
the same wherever it is made.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from paved.errors import LimitExceeded, MethodNotAllowed, PavedError, RetryLater
from serving.headers import REQUEST_ID
from serving.protocol.openai_responses import error_response
from serving.protocol.v2 import ErrorResponse as V2Error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

Protocol = Literal["openai", "v2", "plain"]
JSON = b"application/json"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case, as ASGI servers give them)."""
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


def request_id(scope: Scope) -> bytes:
    """The client's ``x-request-id`` when it is short and plain, else a fresh one.

    A bounded charset and length, so an id copied into logs or responses can carry
    neither a huge value nor control characters.
    """
    sent = header(scope, REQUEST_ID)
    if sent is not None and _VALID_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex.encode()


class Stamped:
    """``send`` that adds fixed headers to the response start and records that it began.

    Once the start is sent, an error can no longer become a response of its own: the
    gateway then only ends the connection.
    """

    __slots__ = ("_headers", "_send", "started")

    def __init__(self, send: Send, headers: Headers) -> None:
        self._send = send
        self._headers = headers
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message = {**message, "headers": [*message.get("headers", ()), *self._headers]}
        await self._send(message)


def header_bytes(scope: Scope) -> int:
    return sum(len(k) + len(v) + 4 for k, v in scope["headers"])


def body_too_large(limit: int) -> LimitExceeded:
    return LimitExceeded(f"request body exceeds the limit of {limit} bytes", rule="max_body_bytes")


async def read_body(receive: Receive, limit: int, declared: bytes | None = None) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes.

    ``declared`` (the request's ``content-length``, when the caller looked it up) refuses
    a body that cannot fit before any of it is read. A client that disconnects first
    raises :class:`ConnectionAbortedError`: there is nobody to answer.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON,
    headers: Headers | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, doc: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, json.dumps(doc).encode(), headers=headers)


def retry_after(seconds: float) -> bytes:
    """``Retry-After`` for a wait of ``seconds``: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds))).encode()


def error_headers(exc: PavedError) -> Headers:
    """The headers an error's response carries: ``Retry-After``, ``Allow``."""
    if isinstance(exc, RetryLater):
        return [(b"retry-after", retry_after(exc.retry_after_s))]
    if isinstance(exc, MethodNotAllowed):
        return [(b"allow", exc.allow.encode())]
    return []


def error_body(exc: PavedError, protocol: Protocol) -> dict[str, Any]:
    """The error in the caller's protocol: the same builders the replicas use."""
    if protocol == "openai":
        return error_response(exc).model_dump()
    if protocol == "v2":
        return V2Error.from_error(exc).model_dump()
    return {"error": exc.to_dict()}


async def send_error(
    send: Send,
    exc: PavedError,
    protocol: Protocol,
    headers: Headers | None = None,
) -> None:
    extra = error_headers(exc)
    if headers:
        extra[:0] = headers
    await send_json(send, exc.status, error_body(exc, protocol), extra)


async def lifespan(
    receive: Receive,
    send: Send,
    *,
    startup: Callable[[], None] | None = None,
    shutdown: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer the lifespan events, running ``startup`` and ``shutdown`` on them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown is not None:
                await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
