"""Small raw-ASGI helpers for the gateway's hot path (no framework per request)."""

from __future__ import annotations

import json
from typing import Any, Literal

from paved.errors import LimitExceeded, PavedError, RateLimited, Unavailable
from serving.backends.base import Receive, Scope, Send
from serving.protocol.openai_responses import error_response
from serving.protocol.v2 import ErrorResponse as V2Error

Protocol = Literal["openai", "v2", "plain"]
JSON = b"application/json"


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


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
