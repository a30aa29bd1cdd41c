"""Small raw-ASGI helpers for the gateway's hot path (no framework per request)."""

from __future__ import annotations

import json
from typing import Any, Literal

from paved.errors import LimitExceeded, PavedError, RateLimited, Unavailable
from serving.backends.base import Receive, Scope, Send

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


def parse_json(body: bytes) -> dict[str, Any]:
    from paved.errors import InvalidInput

    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", rule="json") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object", rule="json")
    return doc


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


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(exc: PavedError, protocol: Protocol) -> dict[str, Any]:
    """The error in the caller's protocol: OpenAI's shape, v2's, or Pavedpath's own."""
    message = exc.message + (f" (rule: {exc.rule})" if exc.rule else "")
    if protocol == "openai":
        return {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(exc.status, "server_error"),
                "param": exc.details.get("param"),
                "code": exc.rule or exc.code,
            }
        }
    if protocol == "v2":
        return {"error": message}
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
