"""The one admission gate: bounded in flight, a per-key bound, closing, drained on an event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from paved.errors import RateLimited, Unavailable
from serving.admission import Gate
from serving.gateway.admission import admission

pytestmark = pytest.mark.unit


def test_past_the_limit_a_request_is_refused_and_not_counted() -> None:
    gate = Gate(2)
    with gate.admit(), gate.admit():
        with pytest.raises(Unavailable):
            gate.acquire()
        assert gate.in_flight == 2
    assert gate.in_flight == 0


def test_a_key_has_its_own_bound_under_the_total() -> None:
    gate = admission(10)
    with gate.admit("chat", 1):
        with pytest.raises(RateLimited) as refused:
            gate.admit("chat", 1).__enter__()
        assert refused.value.rule == "max_inflight"
        with gate.admit("search", 1):
            assert (gate.inflight("chat"), gate.inflight("search"), gate.in_flight) == (1, 1, 2)
    assert gate.inflight("chat") == 0


def test_the_total_bound_comes_before_the_key_bound() -> None:
    gate = admission(1)
    with gate.admit("chat", 5), pytest.raises(Unavailable) as refused:
        gate.admit("search", 5).__enter__()
    assert refused.value.rule == "gateway_inflight"


def test_a_slot_releases_once_and_tracking_follows_it() -> None:
    counts: dict[str, int] = {}

    def track(key: str) -> Callable[[], None]:
        counts[key] = counts.get(key, 0) + 1

        def untrack() -> None:
            counts[key] -= 1

        return untrack

    gate = Gate(3, track=track)
    slot = gate.acquire("chat", 2)
    assert counts == {"chat": 1}
    slot.release()
    slot.release()
    assert (gate.in_flight, counts) == (0, {"chat": 0})


def test_a_closed_gate_refuses_everything() -> None:
    gate = admission(10)
    gate.close()
    with pytest.raises(Unavailable) as refused:
        gate.admit("chat", 5).__enter__()
    assert refused.value.retry_after_s == 2
    assert gate.in_flight == 0


async def test_drained_wakes_when_the_last_request_leaves() -> None:
    gate = Gate(2)
    slot = gate.acquire()
    waiting = asyncio.create_task(gate.drained(60))
    await asyncio.sleep(0)
    assert not waiting.done()
    slot.release()
    assert await waiting


async def test_drained_times_out_while_a_request_stays() -> None:
    gate = Gate(1)
    gate.acquire()
    assert not await gate.drained(0.01)
    assert await Gate(1).drained(0)
