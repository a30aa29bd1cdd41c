"""Usage of streams cut short by their client, kept briefly for the gateway to collect.

The gateway meters every request from the replica's ``: paved-usage`` comment. When
the client leaves mid-stream, the gateway closes the upstream connection at once (that
is what aborts the generation), so the comment can no longer arrive. The replica then
records the tally of what the engine generated up to the abort under the id the gateway
sent (``x-paved-upstream-id``), and the gateway fetches it with
``GET /paved/usage/{id}`` (a GET: nothing runs twice). Records are bounded in number
and age: a gateway that never asks costs a few bytes for a minute.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable

from serving.protocol.openai_responses import Usage

_ID = re.compile(r"[0-9a-f]{8,64}")


def valid_upstream_id(value: str | bytes | None) -> str | None:
    """The id when it is one the gateway makes (lower-case hex), else ``None``."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return text if _ID.fullmatch(text) else None


class AbortedUsage:
    """``upstream id -> Usage`` for generations aborted because the client left."""

    def __init__(
        self,
        *,
        capacity: int = 4096,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._records: OrderedDict[str, tuple[float, Usage]] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[Usage]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def record(self, upstream_id: str, usage: Usage) -> None:
        waiter = self._waiters.pop(upstream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(usage)
            return
        now = self._clock()
        self._records[upstream_id] = (now, usage)
        while self._records:
            oldest_id, (at, _) = next(iter(self._records.items()))
            if len(self._records) <= self.capacity and at > now - self.ttl_s:
                break
            del self._records[oldest_id]

    async def take(self, upstream_id: str, wait_s: float) -> Usage | None:
        """The usage recorded for ``upstream_id`` (once), waiting up to ``wait_s`` for it:
        the gateway may ask before the replica has noticed the connection close."""
        held = self._records.pop(upstream_id, None)
        if held is not None:
            return held[1]
        if upstream_id in self._waiters or len(self._waiters) >= self.capacity:
            return None
        waiter: asyncio.Future[Usage] = asyncio.get_running_loop().create_future()
        self._waiters[upstream_id] = waiter
        try:
            async with asyncio.timeout(wait_s):
                return await waiter
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(upstream_id, None)
