"""Admission control for a replica: a fixed number of requests in flight, no queue.

Past the limit a request is refused at once with a 503 and ``Retry-After`` rather than
queued: a queued request holds its client while hiding the overload from the gateway,
which can retry on another replica. The count is plain integers because every request
is admitted on the replica's one event loop.
"""

from __future__ import annotations

import asyncio

from paved.errors import Unavailable

RETRY_AFTER_S = 1.0


class Slot:
    """One admitted request; :meth:`release` is idempotent."""

    def __init__(self, gate: ConcurrencyGate) -> None:
        self._gate: ConcurrencyGate | None = gate

    def release(self) -> None:
        if self._gate is not None:
            self._gate._release()
            self._gate = None


class ConcurrencyGate:
    """Admits at most ``limit`` requests at once and refuses the next without waiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def acquire(self) -> Slot:
        if self.in_flight >= self.limit:
            raise Unavailable(
                f"this replica is serving its limit of {self.limit} concurrent requests",
                rule="max_concurrency",
                retry_after_s=RETRY_AFTER_S,
            )
        self.in_flight += 1
        self._idle.clear()
        return Slot(self)

    def _release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
