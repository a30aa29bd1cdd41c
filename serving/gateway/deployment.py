"""The gateway as a Ray Serve deployment serving on its own port (not Serve's proxy).

Several gateway replicas on one node share the public port through SO_REUSEPORT; the
kernel spreads connections across them. Routes arrive at construction and are swapped
at run time by ``update_routes`` (the reconciler's entry point).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from paved.manifest import Endpoint
from serving.gateway.routing import Protocol

log = logging.getLogger("ray.serve")


class RoutesConfig(BaseModel):
    """The gateway's route table as Serve ``user_config``: changing it reconfigures every
    gateway replica in place (no restart), which is how the reconciler moves traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: list[Endpoint]
    protocols: dict[str, Protocol]


class GatewaySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8000
    keys_uri: str
    max_body_bytes: int = 1 << 20
    max_header_bytes: int = 16 << 10
    max_inflight: int = 1024
    stream_idle_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="A stream silent this long ends with an error."
    )
    header_timeout_s: float = Field(default=10.0, gt=0, le=600, description="Request head.")
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Request body.")
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, le=3600, description="Idle.")
    max_connections: int = Field(default=4096, ge=1, le=1_000_000, description="Per replica.")
    internal_token: str = Field(repr=False, description="Sent to replicas on every request.")


@serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0})
class GatewayIngress:
    async def __init__(self, spec: GatewaySpec) -> None:  # type: ignore[misc]
        from serving import metrics

        # Before any metric exists: the replicas on this node share their values, so a
        # scrape of the shared port sees the whole gateway (serving/metrics.py).
        metrics_dir = gateway_metrics_dir()
        metrics.enable_multiprocess(metrics_dir)

        from serving.gateway.app import Gateway
        from serving.gateway.auth import KeyCache
        from serving.gateway.directory import ServeDirectory
        from serving.gateway.limits import GatewayLimits
        from serving.gateway.routing import RouteTable
        from serving.http_server import ConnectionLimits, EmbeddedServer
        from serving.keys import KeyStore

        self._token = spec.internal_token
        self._spec = spec
        store = KeyStore(spec.keys_uri)
        self.gateway = Gateway(
            routes=RouteTable(),
            directory=ServeDirectory(asyncio.get_running_loop()),
            keys=KeyCache(store.snapshot),
            metrics=metrics.GatewayMetrics(multiprocess_dir=metrics_dir),
            limits=GatewayLimits(
                max_body_bytes=spec.max_body_bytes,
                max_header_bytes=spec.max_header_bytes,
                max_inflight=spec.max_inflight,
                stream_idle_timeout_s=spec.stream_idle_timeout_s,
            ),
            internal_token=spec.internal_token,
        )
        self.server = EmbeddedServer(
            self.gateway,
            spec.host,
            spec.port,
            reuse_port=True,
            lifespan="on",
            limits=ConnectionLimits(
                header_timeout_s=spec.header_timeout_s,
                body_timeout_s=spec.body_timeout_s,
                keep_alive_timeout_s=spec.keep_alive_timeout_s,
                max_connections=spec.max_connections,
            ),
        )
        self.server.start()
        await self.server.wait_started()
        log.info("gateway serving on %s", self.server.address)

    async def reconfigure(self, config: dict[str, object]) -> None:
        from serving.gateway.routing import RouteTable

        routes = RoutesConfig.model_validate(config)
        await self.gateway.apply_routes(
            RouteTable.from_endpoints(routes.endpoints, routes.protocols)
        )

    def spec(self) -> dict[str, object]:
        return self._spec.model_dump()

    def internal_token(self) -> str:
        """For a reconciler joining the cluster: replicas it starts must accept the gateway."""
        return self._token

    def ready(self) -> bool:
        return self.gateway.all_ready()

    async def drain(self, timeout_s: float = 30.0) -> None:
        await self.gateway.drain(timeout_s)

    async def __call__(self) -> str:
        return self.server.address

    async def __del__(self) -> None:
        await self.gateway.drain(30.0)
        await self.server.stop()


def gateway_metrics_dir() -> Path:
    """Where the gateway replicas of this node keep their metric values: one directory
    per node and Ray cluster start (a node id is new each time Ray starts), so a new
    cluster never adds up the counts of an old one."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return Path(tempfile.gettempdir()) / f"pavedpath-{os.getuid()}" / "gateway-metrics" / node
