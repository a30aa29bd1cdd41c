"""Ray Serve deployments the gateway benchmark measures against.

:class:`TrivialModel` is a model replica without a model: Serve places it like
``serving/replica.py``'s ``ModelReplica`` (deployment "model" in app
``<endpoint>--v<version>``), it serves ``tests.utils.servers.trivial_replica`` behind
the internal token on its own HTTP server and publishes the address through
``record_replica_metadata``, so the real gateway finds it through the Serve controller.
Chat completions are answered by :func:`chat_replica` in OpenAI's ``chat.completion``
shape, which LiteLLM's proxy parses (the trivial replica's ``text_completion`` body is
refused by LiteLLM as an invalid response, then retried twice with back-off: about 6 s
a request); everything else goes to the trivial replica.

:class:`SelfAnswering` answers the same JSON through Serve's own HTTP proxy: the
"Ray Serve's own HTTP proxy, deployment answering itself" row of DESIGN.md.
"""

from __future__ import annotations

import json
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from tests.utils.servers import trivial_replica

CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
_CHAT_BODY = json.dumps(CHAT_COMPLETION).encode()
_NO_STREAM = b'{"error": "the bench replica answers unstreamed chat only"}'


async def chat_replica(scope: Any, receive: Any, send: Any) -> None:
    """Unstreamed chat completions in OpenAI's shape; other paths: the trivial replica."""
    if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
        await trivial_replica(scope, receive, send)
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if body and json.loads(body).get("stream"):
        status, out = 400, _NO_STREAM
    else:
        status, out = 200, _CHAT_BODY
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": out})


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
class TrivialModel:
    async def __init__(self, internal_token: str) -> None:  # type: ignore[misc]
        from serving.http_server import EmbeddedServer
        from serving.internal_auth import require_token

        self.server = EmbeddedServer(require_token(chat_replica, internal_token), "127.0.0.1")
        self.server.start()
        await self.server.wait_started()

    def record_replica_metadata(self) -> dict[str, str]:
        return {"http": self.server.address}

    async def __call__(self) -> str:
        return self.server.address

    async def __del__(self) -> None:
        await self.server.stop()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
class SelfAnswering:
    def __init__(self) -> None:
        self.body = _CHAT_BODY

    async def __call__(self, request: Request) -> Response:
        await request.body()
        return Response(self.body, media_type="application/json")
