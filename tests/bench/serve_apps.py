"""Ray Serve deployments the gateway benchmark measures against.

:class:`TrivialModel` is a model replica without a model: Serve places it like
``serving/replica.py``'s ``ModelReplica`` (deployment "model" in app
``<endpoint>--v<version>``), it serves ``tests.utils.servers.trivial_replica`` behind
the internal token on its own HTTP server and publishes the address through
``record_replica_metadata``, so the real gateway finds it through the Serve controller.

:class:`SelfAnswering` answers the same JSON through Serve's own HTTP proxy: the
"Ray Serve's own HTTP proxy, deployment answering itself" row of DESIGN.md.
"""

from __future__ import annotations

import json

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from tests.utils.servers import COMPLETION


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
class TrivialModel:
    async def __init__(self, internal_token: str) -> None:  # type: ignore[misc]
        from serving.http_server import EmbeddedServer
        from serving.internal_auth import require_token
        from tests.utils.servers import trivial_replica

        self.server = EmbeddedServer(require_token(trivial_replica, internal_token), "127.0.0.1")
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
        self.body = json.dumps(COMPLETION).encode()

    async def __call__(self, request: Request) -> Response:
        await request.body()
        return Response(self.body, media_type="application/json")
