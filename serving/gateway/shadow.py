"""Shadow mirroring: the challenger gets a copy of a request; its answer is measured
under the ``shadow`` cohort and dropped, and never reaches the client.

Best effort by design: at most ``max_in_flight`` mirrors run at once, and a request that
finds them all busy is not mirrored, so shadowing never queues behind live traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from paved.errors import PavedError
from serving.gateway.balance import Balancer
from serving.gateway.directory import Directory
from serving.gateway.routing import Route
from serving.gateway.upstream import UpstreamPool
from serving.headers import COHORT
from serving.keys import ApiKey
from serving.metrics import GatewayMetrics


class Shadow:
    """The mirrors in flight, bounded; each measured when its answer has been read."""

    def __init__(self, max_in_flight: int = 64) -> None:
        self.max_in_flight = max_in_flight
        self.tasks: set[asyncio.Task[None]] = set()

    def mirror(
        self,
        route: Route,
        path: str,
        body: bytes,
        key: ApiKey,
        stream: bool,
        binary_header: bytes | None,
        *,
        pool: UpstreamPool,
        balancer: Balancer,
        directory: Directory,
        metrics: GatewayMetrics,
        internal: list[tuple[bytes, bytes]],
    ) -> None:
        """Mirror to the challenger in the background; return at once."""
        if len(self.tasks) >= self.max_in_flight or route.challenger is None:
            return
        name, version = route.endpoint.name, route.challenger
        labels = metrics.labels(name, route.endpoint.spec.model, version, "shadow", key.team)

        async def run() -> None:
            started = time.perf_counter()
            status = 599
            fwd = [(b"content-type", b"application/json"), (COHORT, b"shadow"), *internal]
            if binary_header is not None:
                fwd.append((b"inference-header-content-length", binary_header))
            with contextlib.suppress(PavedError, OSError):
                target = balancer.choose(directory.targets(name, version))
                assert target is not None
                balancer.acquire(target)
                try:
                    if stream:
                        resp, chunks = await pool.stream(target, path, body, fwd)
                        async for _ in chunks:
                            pass
                    else:
                        resp = await pool.request(target, "POST", path, body, fwd)
                finally:
                    balancer.release(target)
                status = resp.status
            metrics.observe(labels, status, started)

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
