"""The replica's book of usage for streams whose client left (collected by the gateway)."""

from __future__ import annotations

import asyncio

import pytest

from serving.backends.llm_usage import AbortedUsage, valid_upstream_id
from serving.protocol.openai_responses import Usage

pytestmark = pytest.mark.unit

ID = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_recorded_usage_is_taken_once() -> None:
    book = AbortedUsage()
    book.record(ID, Usage.of(5, 3))

    async def take_twice() -> tuple[Usage | None, Usage | None]:
        return await book.take(ID, 0.0), await book.take(ID, 0.0)

    first, second = asyncio.run(take_twice())
    assert first == Usage.of(5, 3)
    assert second is None


def test_a_gateway_asking_before_the_abort_is_recorded_gets_it_when_it_comes() -> None:
    book = AbortedUsage()

    async def scenario() -> Usage | None:
        asking = asyncio.ensure_future(book.take(ID, 30.0))
        await asyncio.sleep(0)
        book.record(ID, Usage.of(2, 7))
        return await asking

    assert asyncio.run(scenario()) == Usage.of(2, 7)
    assert len(book) == 0


def test_records_are_bounded_in_number_and_age() -> None:
    clock = Clock()
    book = AbortedUsage(capacity=2, ttl_s=10.0, clock=clock)
    for i in range(3):
        book.record(f"{i:08x}", Usage.of(1, i))
    assert len(book) == 2  # the oldest went
    clock.now = 11.0
    book.record("ffffffff", Usage.of(1, 1))
    assert len(book) == 1  # the expired went too


@pytest.mark.parametrize(
    ("value", "ok"),
    [(ID, True), (ID.encode(), True), ("../etc", False), ("ABCDEF12", False), ("a" * 65, False)],
)
def test_only_ids_the_gateway_makes_are_accepted(value: str | bytes, ok: bool) -> None:
    assert (valid_upstream_id(value) is not None) == ok
