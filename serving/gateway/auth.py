"""API key authentication on the hot path: an in-memory snapshot of the key table.

Lookups never touch the database: the snapshot is refreshed in the background every
few seconds, and at once (rate-limited) when an unknown key id shows up, so a key made
with `paved keys create` works within a second and a revoked key stops within the
refresh interval. Keys never appear in logs or errors; only their public id does.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
    ) -> None:
        self._load = load
        self._snapshot: Snapshot = load()
        self.refresh_s = refresh_s
        self._miss_min = miss_refresh_min_s
        self._last_refresh = time.monotonic()
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
        try:
            self._snapshot = await asyncio.to_thread(self._load)
            self._last_refresh = time.monotonic()
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
            unknown_id = parsed is not None and parsed[0] not in self._snapshot
            if unknown_id and time.monotonic() - self._last_refresh >= self._miss_min:
                await self.refresh()
                record = verify(token, self._snapshot)
        if record is None:
            raise Unauthenticated("invalid API key")
        return record
