"""API key authentication on the hot path: an in-memory snapshot of the key table.

Lookups never touch the database: the snapshot is refreshed in the background every
``refresh_s``, and at once when a well-formed but unknown key id shows up, so a key
made with `paved keys create` works on its first request. A revoked key stops within
the refresh interval. Keys never appear in logs or errors; only their public id does.

A flood of unknown or malformed keys costs the database nothing per request:

- a malformed key is refused without a lookup;
- the refresh an unknown id triggers is single-flight (concurrent misses, and a
  background refresh under way, share one read) and starts at most once per
  ``miss_refresh_min_s``; a miss inside that window is refused without one (so a new
  key's first request can be refused only while other unknown ids arrive);
- an id that a refresh did not find is remembered as unknown (bounded: at most
  ``negative_max`` ids, each for ``negative_ttl_s``), so repeating it triggers nothing.

So the key table is read at most once per ``miss_refresh_min_s`` plus once per
``refresh_s``, however many requests arrive and whatever ids they carry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from paved.errors import Unauthenticated
from serving.keys import ApiKey, parse_key, verify

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[str, ApiKey]]


class KeyCache:
    def __init__(
        self,
        load: Callable[[], Snapshot],
        *,
        refresh_s: float = 5.0,
        miss_refresh_min_s: float = 1.0,
        negative_ttl_s: float = 60.0,
        negative_max: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock = clock
        self._snapshot: Snapshot = load()
        self.refresh_s = refresh_s
        self._miss_min = miss_refresh_min_s
        self._negative_ttl = negative_ttl_s
        self._negative_max = negative_max
        self._unknown: OrderedDict[str, float] = OrderedDict()  # key id -> expiry, oldest first
        self._last_miss_refresh = -float("inf")  # the last refresh an unknown id asked for
        self._refreshing: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def teams(self) -> frozenset[str]:
        return frozenset(rec.team for _, rec in self._snapshot.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    async def refresh(self) -> None:
        """Reload the snapshot. Callers that arrive while a reload runs share it."""
        if self._refreshing is None:
            future = asyncio.ensure_future(self._reload())
            self._refreshing = future
            future.add_done_callback(self._refreshed)
        # Shielded: one caller cancelled (its client left) does not cancel the others' read.
        await asyncio.shield(self._refreshing)

    def _refreshed(self, future: asyncio.Future[None]) -> None:
        if self._refreshing is future:
            self._refreshing = None

    async def _reload(self) -> None:
        try:
            self._snapshot = await asyncio.to_thread(self._load)
        except Exception:
            log.exception("could not refresh API keys; keeping the last snapshot")

    async def authenticate(self, authorization: bytes | None) -> ApiKey:
        """The key record for an ``Authorization: Bearer <key>`` header, or 401."""
        if not authorization:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
        token = token.strip()
        record = verify(token, self._snapshot)
        if record is None:
            parsed = parse_key(token)
            if parsed is not None and parsed[0] not in self._snapshot:
                record = await self._after_miss(parsed[0], token)
        if record is None:
            raise Unauthenticated("invalid API key")
        return record

    async def _after_miss(self, key_id: str, token: str) -> ApiKey | None:
        """The record once a refresh looked for ``key_id``, when one may run now."""
        now = self._clock()
        expiry = self._unknown.get(key_id)
        if expiry is not None:
            if expiry > now:
                return None
            del self._unknown[key_id]
        if self._refreshing is None:
            if now - self._last_miss_refresh < self._miss_min:
                return None  # a miss refreshed just now: not again yet (nor remembered)
            self._last_miss_refresh = now  # at the start: a failing database is spared too
        await self.refresh()
        record = verify(token, self._snapshot)
        if record is None and key_id not in self._snapshot:
            self._remember_unknown(key_id)
        return record

    def _remember_unknown(self, key_id: str) -> None:
        self._unknown[key_id] = self._clock() + self._negative_ttl
        self._unknown.move_to_end(key_id)
        while len(self._unknown) > self._negative_max:
            self._unknown.popitem(last=False)
