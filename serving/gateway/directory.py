"""Where the replicas of each endpoint version listen.

Model replicas run their own HTTP server and publish its address through Ray Serve's
``record_replica_metadata`` hook. :class:`ServeDirectory` follows the Serve controller's
long-poll of running replicas per deployment, exactly as Serve's own request routers do,
so a replica appears only once Serve considers it ready and disappears as soon as Serve
stops it. That relies on ``ray.serve._private``, used only through
:mod:`serving.ray_compat`; the rest of the gateway sees :class:`Directory`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from paved.errors import Unavailable
from serving import ray_compat

log = logging.getLogger(__name__)


def deployment_app_name(endpoint: str, version: int) -> str:
    """The Ray Serve application serving one endpoint version."""
    return f"{endpoint}--v{version}"


MODEL_DEPLOYMENT = "model"


class Directory(Protocol):
    def targets(self, endpoint: str, version: int) -> Sequence[str]:
        """The ready replicas' addresses; raises :class:`Unavailable` when there are none.

        Which one gets a request is the gateway's :class:`~serving.gateway.balance.Balancer`.
        """
        ...

    def ready(self, endpoint: str, version: int) -> bool: ...

    def watch(self, endpoint: str, version: int) -> None: ...


class StaticDirectory:
    """Fixed addresses: for tests and benchmarks against plain servers."""

    def __init__(self, targets: dict[tuple[str, int], list[str]]) -> None:
        self._targets = targets

    def targets(self, endpoint: str, version: int) -> Sequence[str]:
        addrs = self._targets.get((endpoint, version))
        if not addrs:
            raise Unavailable(f"no ready replica for {endpoint} v{version}", retry_after_s=1)
        return addrs

    def ready(self, endpoint: str, version: int) -> bool:
        return bool(self._targets.get((endpoint, version)))

    def watch(self, endpoint: str, version: int) -> None:
        return None


class ServeDirectory:
    """Replica addresses learned from the Ray Serve controller (long-poll)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_event_loop()
        self._addresses: dict[tuple[str, int], list[str]] = {}
        self._clients: dict[tuple[str, int], Any] = {}

    def watch(self, endpoint: str, version: int) -> None:
        key = (endpoint, version)
        if key in self._clients:
            return

        def update(metadata: list[dict[str, Any]]) -> None:
            addrs = [m["http"] for m in metadata if "http" in m]
            self._addresses[key] = addrs
            log.info("replicas of %s v%s: %s", endpoint, version, addrs)

        self._clients[key] = ray_compat.watch_replicas(
            MODEL_DEPLOYMENT,
            deployment_app_name(*key),
            update,
            loop=self._loop,
            client_id=f"paved-gateway:{endpoint}:{version}",
        )

    def targets(self, endpoint: str, version: int) -> Sequence[str]:
        addrs = self._addresses.get((endpoint, version))
        if not addrs:
            raise Unavailable(
                f"no ready replica for endpoint {endpoint!r} version {version}", retry_after_s=2
            )
        return addrs

    def ready(self, endpoint: str, version: int) -> bool:
        return bool(self._addresses.get((endpoint, version)))
