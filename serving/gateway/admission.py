"""Bounded admission: past the limits a request is refused at once, never queued.

Per endpoint, more than ``max_inflight`` requests in flight answers 429 (that endpoint
is saturated; try later); past the gateway-wide bound, or while draining, 503. Both
carry ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from paved.errors import RateLimited, Unavailable

Track = Callable[[str], Callable[[], None]]
"""Called when a request on an endpoint is admitted; the call it returns, when it leaves."""


class Admission:
    def __init__(self, max_total: int, track: Track | None = None) -> None:
        self.max_total = max_total
        self._track = track
        self.total = 0
        self._per: dict[str, int] = defaultdict(int)

    def inflight(self, endpoint: str) -> int:
        return self._per[endpoint]

    @contextmanager
    def admit(self, endpoint: str, limit: int, draining: bool) -> Iterator[None]:
        if draining:
            raise Unavailable("the gateway is shutting down", retry_after_s=2)
        if self.total >= self.max_total:
            raise Unavailable(
                f"the gateway has {self.total} requests in flight (limit {self.max_total})",
                retry_after_s=1,
                rule="gateway_inflight",
            )
        if self._per[endpoint] >= limit:
            raise RateLimited(
                f"endpoint {endpoint!r} has {limit} requests in flight, its limit",
                retry_after_s=1,
                rule="max_inflight",
            )
        self.total += 1
        self._per[endpoint] += 1
        release = self._track(endpoint) if self._track is not None else None
        try:
            yield
        finally:
            self.total -= 1
            self._per[endpoint] -= 1
            if release is not None:
                release()

    async def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.total > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.total == 0
