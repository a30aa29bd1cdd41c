"""Small raw-ASGI helpers for the gateway's hot path (no framework per request)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from paved.errors import LimitExceeded, PavedError, RateLimited, Unavailable
from serving.backends.base import Message, Receive, Scope, Send
from serving.protocol.openai_responses import error_response
from serving.protocol.v2 import ErrorResponse as V2Error

Protocol = Literal["openai", "v2", "plain"]
JSON = b"application/json"
REQUEST_ID = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def header(scope: Scope, name: bytes) -> bytes | None:
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

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
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


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(
                f"request body exceeds the limit of {limit} bytes", rule="max_body_bytes"
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
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


async def send_json(
    send: Send, status: int, doc: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_bytes(send, status, json.dumps(doc).encode(), headers=headers)


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
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    extra = list(headers or [])
    if isinstance(exc, RateLimited | Unavailable):
        extra.append((b"retry-after", str(max(1, round(exc.retry_after_s))).encode()))
    await send_json(send, exc.status, error_body(exc, protocol), extra)
