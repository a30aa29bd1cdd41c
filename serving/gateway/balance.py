"""Which replica of a version gets a request.

Power of two choices: of two replicas drawn at random, the one with fewer requests in
flight from this gateway. It needs no shared state, avoids the herd that "least loaded
of all" causes when several gateways see the same counts, and stays within a small
factor of the best queue lengths (Mitzenmacher). A replica that refuses connections is
ejected for a while that doubles with each failure in a row, bounded by
``eject_max_s``; once the time is up it is tried again, and one success clears it. If
every replica is ejected, the one that comes back soonest is tried rather than none.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class _Ejection:
    failures: int
    until: float


class Balancer:
    """In-flight counts and ejections per replica address (``host:port``)."""

    MAX_TRACKED = 4096  # ejection records kept; expired ones are pruned past it

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        eject_base_s: float = 1.0,
        eject_max_s: float = 30.0,
    ) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self.eject_base_s = eject_base_s
        self.eject_max_s = eject_max_s
        self._inflight: dict[str, int] = {}
        self._ejected: dict[str, _Ejection] = {}

    def inflight(self, target: str) -> int:
        return self._inflight.get(target, 0)

    def ejected(self, target: str) -> bool:
        e = self._ejected.get(target)
        return e is not None and e.until > self._clock()

    def choose(self, targets: Sequence[str], exclude: Container[str] = ()) -> str | None:
        """A replica for the next request, or ``None`` when every one is excluded."""
        candidates = [t for t in targets if t not in exclude]
        if not candidates:
            return None
        if self._ejected:
            now = self._clock()
            healthy = [t for t in candidates if self._back(t, now)]
            if not healthy:
                return min(candidates, key=lambda t: self._ejected[t].until)
            candidates = healthy
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        return a if self.inflight(a) <= self.inflight(b) else b

    def _back(self, target: str, now: float) -> bool:
        e = self._ejected.get(target)
        return e is None or e.until <= now

    def acquire(self, target: str) -> None:
        self._inflight[target] = self._inflight.get(target, 0) + 1

    def release(self, target: str) -> None:
        left = self._inflight.get(target, 0) - 1
        if left > 0:
            self._inflight[target] = left
        else:
            self._inflight.pop(target, None)

    def failed(self, target: str) -> float:
        """A connection to ``target`` failed: eject it; returns the seconds it is out."""
        now = self._clock()
        e = self._ejected.get(target)
        failures = 1 if e is None else e.failures + 1
        out_s = min(self.eject_max_s, self.eject_base_s * float(2 ** min(failures - 1, 30)))
        self._ejected[target] = _Ejection(failures, now + out_s)
        if len(self._ejected) > self.MAX_TRACKED:
            for t in [t for t, e in self._ejected.items() if e.until <= now]:
                del self._ejected[t]
        return out_s

    def succeeded(self, target: str) -> None:
        if self._ejected:
            self._ejected.pop(target, None)
