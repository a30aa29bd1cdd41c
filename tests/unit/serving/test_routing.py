"""The champion/challenger split: weights, stickiness, per-endpoint salting, edges."""

from __future__ import annotations

import math
import random

import pytest

from paved.manifest import Endpoint
from serving.gateway.routing import Route, bucket, choose, user_id

pytestmark = pytest.mark.unit

USERS = [f"user-{i}" for i in range(10_000)]


def _route(name: str = "chat", weight: int = 50, *, sticky: bool = True) -> Route:
    ep = Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": "search"},
            "spec": {
                "model": "m",
                "champion": {"version": 1},
                "challenger": {"version": 2, "weight": weight, "sticky": sticky},
            },
        }
    )
    return Route.from_manifest(ep, "openai")


def _within_binomial(hits: int, n: int, p: float, sds: float = 5.0) -> bool:
    return abs(hits - n * p) <= sds * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("weight", [1, 5, 25, 50, 90, 99])
def test_sticky_weights_are_honoured_over_many_users(weight: int) -> None:
    route = _route(weight=weight)
    hits = sum(choose(route, u)[1] == "challenger" for u in USERS)
    assert _within_binomial(hits, len(USERS), weight / 100), hits


@pytest.mark.parametrize("weight", [5, 50, 95])
def test_random_weights_are_honoured(weight: int) -> None:
    route = _route(weight=weight, sticky=False)
    rng = random.Random(7)
    hits = sum(choose(route, "same-user", rng)[1] == "challenger" for _ in range(10_000))
    assert _within_binomial(hits, 10_000, weight / 100), hits


def test_a_user_stays_on_one_side() -> None:
    route = _route(weight=50)
    for u in USERS[:200]:
        assert len({choose(route, u, random.Random(i)) for i in range(5)}) == 1


def test_raising_the_weight_only_moves_users_to_the_challenger() -> None:
    before = {u for u in USERS if choose(_route(weight=25), u)[1] == "challenger"}
    after = {u for u in USERS if choose(_route(weight=50), u)[1] == "challenger"}
    assert before < after


def test_the_salt_decorrelates_endpoints() -> None:
    a, b = _route("chat", 50), _route("summarize", 50)
    in_a = {u for u in USERS if choose(a, u)[1] == "challenger"}
    in_b = {u for u in USERS if choose(b, u)[1] == "challenger"}
    # Independent groups overlap on a quarter of users; unsalted ones on half.
    assert _within_binomial(len(in_a & in_b), len(USERS), 0.25), len(in_a & in_b)
    assert [bucket(u, "chat") for u in USERS[:50]] != [bucket(u, "summarize") for u in USERS[:50]]


def test_bucket_is_stable_and_in_range() -> None:
    values = [bucket(u, "chat") for u in USERS]
    assert values == [bucket(u, "chat") for u in USERS]
    assert min(values) == 0
    assert max(values) == 99


@pytest.mark.parametrize("sticky", [True, False])
def test_weight_edges(sticky: bool) -> None:
    rng = random.Random(0)
    zero, full = _route(weight=0, sticky=sticky), _route(weight=100, sticky=sticky)
    assert {choose(zero, u, rng) for u in USERS[:500]} == {(1, "champion")}
    assert {choose(full, u, rng) for u in USERS[:500]} == {(2, "challenger")}
    assert {choose(zero, None, rng) for _ in range(100)} == {(1, "champion")}
    assert {choose(full, None, rng) for _ in range(100)} == {(2, "challenger")}


def test_no_challenger_means_champion() -> None:
    ep = Endpoint.model_validate(
        {"metadata": {"name": "x", "team": "t"}, "spec": {"model": "m", "champion": {"version": 3}}}
    )
    assert choose(Route.from_manifest(ep, "v2"), "u") == (3, "champion")


def test_sticky_route_without_a_user_draws_at_random() -> None:
    route = _route(weight=50)
    rng = random.Random(1)
    cohorts = {choose(route, None, rng)[1] for _ in range(100)}
    assert cohorts == {"champion", "challenger"}


def test_user_id_comes_from_the_header_then_the_openai_field() -> None:
    assert user_id(b"alice", "bob") == "alice"
    assert user_id(None, "bob") == "bob"
    assert user_id(b"", "bob") == "bob"
    assert user_id(None, "") is None
    assert user_id(None, 42) is None
    assert user_id(None) is None
