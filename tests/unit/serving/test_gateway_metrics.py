"""Gateway metrics: closed label sets, a gauge that goes down, late teams, route codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paved.errors import RateLimited
from serving.gateway.admission import admission
from serving.metrics import MAX_TEAM_LABELS, OTHER, GatewayMetrics, route_label

pytestmark = pytest.mark.unit


def _samples(m: GatewayMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def _metrics(teams: set[str], source: set[str] | None = None) -> GatewayMetrics:
    m = GatewayMetrics()
    m.bound(
        endpoints=["chat"],
        teams=teams,
        versions=[1, 2],
        team_source=(lambda: frozenset(source)) if source is not None else None,
    )
    return m


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/completions", "/v1/completions"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/metrics", "/metrics"),
        ("/v2/models/risk/infer", "/v2/models/{name}/infer"),
        ("/v2/models/anything-at-all/versions/999/infer", "/v2/models/{name}/infer"),
        ("/v2/models/risk/ready", "/v2/models/{name}/ready"),
        ("/v2/models/risk", "/v2/models/{name}"),
        ("/v2/models/risk/nope", OTHER),
        ("/v1/completions/x", OTHER),
        ("/" + "a" * 500, OTHER),
        ("/v2/models/a/b/c/d", OTHER),
    ],
)
def test_route_labels_are_templates_from_a_fixed_set(path: str, label: str) -> None:
    assert route_label(path) == label


def test_labels_outside_the_closed_sets_are_other() -> None:
    m = _metrics({"search"})
    assert m.labels("chat", "m", 2, "challenger", "search") == (
        "chat",
        "m",
        "2",
        "challenger",
        "search",
    )
    assert m.labels("nope", "m", 7, "evil", "intruder") == (OTHER,) * 5
    assert m.labels("chat", "m", None, "shadow", None) == ("chat", "m", OTHER, "shadow", OTHER)


def test_a_team_added_after_start_gets_its_own_label() -> None:
    keys = {"search"}
    m = _metrics({"search"}, keys)
    assert m.labels("chat", "m", 1, "champion", "late")[4] == OTHER
    keys.add("late")  # a key for a new team was created; the key snapshot has it
    assert m.labels("chat", "m", 1, "champion", "late")[4] == "late"
    assert m.labels("chat", "m", 1, "champion", "never-a-key")[4] == OTHER


def test_team_labels_are_capped() -> None:
    keys = {f"t{i}" for i in range(MAX_TEAM_LABELS + 50)}
    m = _metrics(set(), keys)
    got = {m.labels("chat", "m", 1, "champion", t)[4] for t in sorted(keys)}
    assert len(got) == MAX_TEAM_LABELS + 1  # the cap, and `other` for the rest
    assert OTHER in got


def test_the_queue_gauge_goes_down_as_well_as_up() -> None:
    m = _metrics({"search"})
    gate = admission(10, track=m.inflight)
    depth = ((("endpoint", "chat"),),)
    with gate.admit("chat", 5), gate.admit("chat", 5):
        assert _samples(m, "paved_queue_depth")[depth[0]] == 2
    assert _samples(m, "paved_queue_depth")[depth[0]] == 0
    with pytest.raises(ValueError, match="failed"), gate.admit("chat", 5):
        raise ValueError("the request failed")
    assert _samples(m, "paved_queue_depth")[depth[0]] == 0
    with gate.admit("chat", 1):
        with pytest.raises(RateLimited):  # refused: never counted
            gate.admit("chat", 1).__enter__()
        assert _samples(m, "paved_queue_depth")[depth[0]] == 1
    with gate.admit("gone", 5):
        assert _samples(m, "paved_queue_depth")[(("endpoint", OTHER),)] == 1
    assert _samples(m, "paved_queue_depth")[(("endpoint", OTHER),)] == 0


def test_counting_send_counts_each_response_by_route_and_code() -> None:
    m = _metrics({"search"})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def respond(path: str, status: int) -> None:
        s = m.counting(send, path)
        await s({"type": "http.response.start", "status": status, "headers": []})
        await s({"type": "http.response.body", "body": b"x"})

    async def main() -> None:
        await respond("/v1/completions", 401)
        await respond("/v1/completions", 401)
        await respond("/v2/models/x/infer", 503)
        await respond("/random/../path", 404)

    asyncio.run(main())
    assert len(sent) == 8
    got = _samples(m, "paved_responses_total")
    assert got == {
        (("code", "401"), ("route", "/v1/completions")): 2,
        (("code", "503"), ("route", "/v2/models/{name}/infer")): 1,
        (("code", "404"), ("route", OTHER)): 1,
    }


def test_multiprocess_mode_needs_the_environment_first(tmp_path: Any) -> None:
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        GatewayMetrics(multiprocess_dir=tmp_path)
