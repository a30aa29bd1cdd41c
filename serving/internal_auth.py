"""Replicas answer only the gateway: a per-deployment secret in ``x-paved-internal-token``.

Replica HTTP servers are reachable by anything that can reach the node, and they do
no API-key checks (the gateway did). The token makes a request that bypassed the
gateway fail with 403 instead of reaching the model. Compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

from serving.asgi import ASGIApp, Receive, Scope, Send, send_bytes
from serving.headers import INTERNAL_TOKEN as HEADER

_REFUSED = b'{"error": "this replica answers only the Pavedpath gateway"}'


def new_token() -> str:
    return secrets.token_urlsafe(32)


def require_token(app: ASGIApp, token: str) -> ASGIApp:
    expected = token.encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k == HEADER), b"")
            if not hmac.compare_digest(bytes(given), expected):
                await send_bytes(send, 403, _REFUSED)
                return
        await app(scope, receive, send)

    return guarded
