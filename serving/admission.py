"""One admission gate for the gateway and the replicas: bounded, never a queue.

At most ``limit`` requests are in flight; with a key (the gateway's endpoint), at most
that key's bound as well. Past either a request is refused at once with the error its
owner chose (a 503 or 429 with ``Retry-After``) instead of waiting: a queued request
holds its client while hiding the overload from whoever could send it elsewhere. A
closed gate refuses everything (draining). :meth:`Gate.drained` waits on an event set
by the last request out, no polling. The counts are plain integers because every
request is admitted on one event loop.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from paved.errors import PavedError, Unavailable

Track = Callable[[str], Callable[[], None]]
"""Called when a request with a key is admitted; the call it returns, when it leaves."""


def _closed() -> PavedError:
    return Unavailable("not accepting requests", rule="draining")


def _full(limit: int) -> PavedError:
    return Unavailable(f"{limit} requests are in flight, the limit", rule="max_inflight")


def _key_full(key: str, limit: int) -> PavedError:
    return Unavailable(f"{key!r} has {limit} requests in flight, its limit", rule="max_inflight")


class Slot:
    """One admitted request held past a call (a stream); :meth:`release` is idempotent."""

    __slots__ = ("_gate", "_key", "_untrack")

    def __init__(self, gate: Gate, key: str | None, untrack: Callable[[], None] | None) -> None:
        self._gate: Gate | None = gate
        self._key = key
        self._untrack = untrack

    def release(self) -> None:
        if self._gate is not None:
            self._gate._leave(self._key, self._untrack)
            self._gate = None


class Gate:
    """Admits at most ``limit`` requests at once (and ``key_limit`` per key) and refuses
    the next without waiting; ``full``, ``key_full`` and ``closed`` build the refusals."""

    __slots__ = (
        "_closed",
        "_full",
        "_idle",
        "_key_full",
        "_per",
        "_track",
        "closed",
        "in_flight",
        "limit",
    )

    def __init__(
        self,
        limit: int,
        *,
        full: Callable[[int], PavedError] = _full,
        key_full: Callable[[str, int], PavedError] = _key_full,
        closed: Callable[[], PavedError] = _closed,
        track: Track | None = None,
    ) -> None:
        self.limit = limit
        self.in_flight = 0
        self.closed = False
        self._full = full
        self._key_full = key_full
        self._closed = closed
        self._track = track
        self._per: defaultdict[str, int] = defaultdict(int)
        self._idle: asyncio.Event | None = None  # made by the first drained() that waits

    def inflight(self, key: str) -> int:
        """Requests in flight under ``key``."""
        return self._per.get(key, 0)

    def _enter(self, key: str | None, key_limit: int) -> Callable[[], None] | None:
        if self.closed:
            raise self._closed()
        if self.in_flight >= self.limit:
            raise self._full(self.limit)
        if key is None:
            self.in_flight += 1
            return None
        per = self._per
        if per[key] >= key_limit:
            raise self._key_full(key, key_limit)
        self.in_flight += 1
        per[key] += 1
        return self._track(key) if self._track is not None else None

    def _leave(self, key: str | None, untrack: Callable[[], None] | None) -> None:
        self.in_flight -= 1
        if key is not None:
            self._per[key] -= 1
        if untrack is not None:
            untrack()
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    @contextmanager
    def admit(self, key: str | None = None, key_limit: int = 0) -> Iterator[None]:
        """Hold a slot for the ``with`` block, or raise the refusal."""
        untrack = self._enter(key, key_limit)
        try:
            yield
        finally:
            self._leave(key, untrack)

    def acquire(self, key: str | None = None, key_limit: int = 0) -> Slot:
        """A slot that outlives the call (released by whoever ends the response)."""
        return Slot(self, key, self._enter(key, key_limit))

    def close(self) -> None:
        """Refuse every new request from now on (draining)."""
        self.closed = True

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout_s`` passed first."""
        if self.in_flight == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
