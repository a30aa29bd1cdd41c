"""The gateway's replica chooser: power of two choices, ejection with an injected clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from serving.gateway.balance import Balancer

pytestmark = pytest.mark.unit

A, B, C = "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_of_two_drawn_the_less_loaded_wins() -> None:
    bal = Balancer(rng=random.Random(0))
    for _ in range(5):
        bal.acquire(A)
    bal.acquire(B)
    # with two replicas both are always drawn: the less loaded one wins every time
    assert {bal.choose([A, B]) for _ in range(50)} == {B}


def test_the_most_loaded_of_three_is_never_chosen() -> None:
    bal = Balancer(rng=random.Random(1))
    for target, n in ((A, 3), (B, 1), (C, 2)):
        for _ in range(n):
            bal.acquire(target)
    picks = Counter(bal.choose([A, B, C]) for _ in range(300))
    assert picks[A] == 0  # it loses any pair it is drawn in
    assert picks[B] > picks[C] > 0  # B wins both its pairs, C only the one against A


def test_equal_loads_spread_over_every_replica() -> None:
    bal = Balancer(rng=random.Random(2))
    picks = Counter(bal.choose([A, B, C]) for _ in range(300))
    assert set(picks) == {A, B, C}


def test_in_flight_counts_go_back_to_zero() -> None:
    bal = Balancer(rng=random.Random(0))
    bal.acquire(A)
    bal.acquire(A)
    bal.release(A)
    assert bal.inflight(A) == 1
    bal.release(A)
    assert bal.inflight(A) == 0
    assert not bal._inflight  # no entry is left behind for a replica that went away


def test_excluded_replicas_are_not_chosen() -> None:
    bal = Balancer(rng=random.Random(0))
    assert {bal.choose([A, B, C], exclude=[A, B]) for _ in range(20)} == {C}
    assert bal.choose([A, B], exclude=[A, B]) is None


def test_a_failing_replica_is_ejected_for_a_doubling_bounded_while() -> None:
    clock = Clock()
    bal = Balancer(rng=random.Random(0), clock=clock, eject_base_s=1.0, eject_max_s=4.0)
    assert bal.failed(A) == 1.0
    assert bal.ejected(A)
    assert {bal.choose([A, B]) for _ in range(20)} == {B}
    clock.now += 1.0  # time is up: it is tried again
    assert not bal.ejected(A)
    assert A in {bal.choose([A, B]) for _ in range(50)}
    assert [bal.failed(A) for _ in range(4)] == [2.0, 4.0, 4.0, 4.0]  # doubles, bounded
    clock.now += 3.9
    assert bal.ejected(A)
    clock.now += 0.1
    bal.succeeded(A)  # one success clears its record
    assert bal.failed(A) == 1.0


def test_when_every_replica_is_ejected_the_one_back_soonest_is_tried() -> None:
    clock = Clock()
    bal = Balancer(rng=random.Random(0), clock=clock)
    bal.failed(A)
    bal.failed(A)  # out for 2 s
    bal.failed(B)  # out for 1 s
    assert bal.choose([A, B]) == B
    assert bal.choose([A, B], exclude=[B]) == A
