"""Gateway metrics over real HTTP: every refusal counted, labels bounded under hostile
input, late teams labelled, sticky users from one place, and several gateway processes
on one port seen whole by any scrape."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.routing import RouteTable, choose
from serving.keys import KeyStore
from serving.metrics import OTHER
from tests.utils.servers import UvicornThread, free_port, trivial_replica

pytestmark = pytest.mark.integration

ENDPOINTS = {"ok", "down", "tight", "risk"}
ROUTES = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/metrics",
    "/healthz",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/ready",
    "/v2/models/{name}",
    OTHER,
}


def _ep(name: str, champion: int, **spec: object) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": "search"},
            "spec": {"model": f"{name}-model", "champion": {"version": champion}, **spec},
        }
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    keys = {
        "app": store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0],
        "viewer": store.create(team="search", roles=frozenset({Role.VIEWER}), created_by="t")[0],
    }
    canary = {"version": 2, "weight": 50, "sticky": True}
    endpoints = [
        _ep("ok", 1, challenger=canary, access={"teams": ["late"]}),
        _ep("down", 1),
        _ep("tight", 1, limits={"max_inflight": 1}),
        _ep("risk", 3, challenger=canary),
    ]
    protocols = {"ok": "openai", "down": "openai", "tight": "openai", "risk": "v2"}
    with UvicornThread(trivial_replica) as r1, UvicornThread(trivial_replica) as r2:
        directory = StaticDirectory(
            {
                ("ok", 1): [r1.address],
                ("ok", 2): [r2.address],
                ("tight", 1): [r1.address],
                ("risk", 3): [r1.address],
                ("risk", 2): [r2.address],
            }  # no replica for "down": 503
        )
        gw = Gateway(
            routes=RouteTable.from_endpoints(endpoints, protocols),  # type: ignore[arg-type]
            directory=directory,
            keys=KeyCache(store.snapshot, refresh_s=0.5, miss_refresh_min_s=0.0),
        )
        with UvicornThread(gw) as server:
            yield {"url": server.url, "keys": keys, "store": store, "gateway": gw}


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _scrape(url: str, key: str) -> list[Any]:
    r = httpx.get(url + "/metrics", headers=_h(key))
    assert r.status_code == 200
    return list(text_string_to_metric_families(r.text))


def _value(families: list[Any], sample: str, **labels: str) -> float:
    return sum(
        float(s.value)
        for f in families
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_refusal_is_counted_by_route_and_code(stack: dict[str, Any]) -> None:
    url, keys, gw = stack["url"], stack["keys"], stack["gateway"]
    body = {"model": "ok", "prompt": "x"}
    before = _scrape(url, keys["viewer"])
    with httpx.Client(base_url=url) as c:
        for _ in range(3):
            assert c.post("/v1/completions", json=body).status_code == 401
        assert c.post("/v2/models/risk/infer", json={"inputs": []}).status_code == 401
        for _ in range(2):
            r = c.post("/v1/completions", headers=_h(keys["viewer"]), json=body)
            assert r.status_code == 403
        r = c.post(
            "/v1/completions", headers=_h(keys["app"]), json={"model": "nope", "prompt": "x"}
        )
        assert r.status_code == 404
        r = c.post("/v1/completions", headers=_h(keys["app"]), content=b"{not json")
        assert r.status_code == 400
        r = c.post("/v1/completions", headers=_h(keys["app"]), json={**body, "model": "down"})
        assert r.status_code == 503
        assert c.get("/no/such/path", headers=_h(keys["app"])).status_code == 404

        # 429: hold the one slot of "tight" with a slow request, then ask again.
        slow = threading.Thread(
            target=httpx.post,
            args=(url + "/v1/completions",),
            kwargs={
                "headers": _h(keys["app"]),
                "json": {"model": "tight", "prompt": "x", "sleep": 3},
                "timeout": 30,
            },
        )
        slow.start()
        deadline = time.monotonic() + 20
        while gw.admission.inflight("tight") == 0:
            assert time.monotonic() < deadline, "the slow request never got in"
            time.sleep(0.01)
        r = c.post("/v1/completions", headers=_h(keys["app"]), json={**body, "model": "tight"})
        assert r.status_code == 429
        slow.join()
    after = _scrape(url, keys["viewer"])

    def delta(route: str, code: str) -> float:
        return _value(after, "paved_responses_total", route=route, code=code) - _value(
            before, "paved_responses_total", route=route, code=code
        )

    assert delta("/v1/completions", "401") == 3
    assert delta("/v2/models/{name}/infer", "401") == 1
    assert delta("/v1/completions", "403") == 2
    assert delta("/v1/completions", "404") == 1
    assert delta("/v1/completions", "400") == 1
    assert delta("/v1/completions", "503") == 1
    assert delta("/v1/completions", "429") == 1
    assert delta("/v1/completions", "200") == 1  # the slow one
    assert delta(OTHER, "404") == 1
    assert delta("/metrics", "200") == 1  # the first scrape
    # Once routed, refusals are counted per endpoint too.
    errors = "paved_request_errors_total"
    assert (
        _value(after, errors, endpoint="down", code="503")
        - _value(before, errors, endpoint="down", code="503")
        == 1
    )
    assert (
        _value(after, errors, endpoint="tight", code="429")
        - _value(before, errors, endpoint="tight", code="429")
        == 1
    )
    assert _value(after, "paved_queue_depth", endpoint="tight") == 0


def test_labels_stay_bounded_under_hostile_input(stack: dict[str, Any]) -> None:
    url, keys = stack["url"], stack["keys"]
    tokens = [f"zz{secrets.token_hex(6)}" for _ in range(40)]
    with httpx.Client(base_url=url) as c:
        for t in tokens:
            hostile = {**_h(keys["app"]), "x-paved-team": t, "x-paved-user": t, "x-paved-cohort": t}
            ok = c.post(
                "/v1/completions", headers=hostile, json={"model": "ok", "prompt": "x", "user": t}
            )
            assert ok.status_code == 200
            c.post("/v1/completions", headers=hostile, json={"model": t, "prompt": "x"})
            c.post(f"/v2/models/{t}/infer", headers=hostile, json={"inputs": []})
            c.post(f"/v2/models/risk/{t}", headers=hostile, json={"inputs": []})
            c.get(f"/{t}", headers=hostile)
            c.get(f"/v1/{t}")
    text = httpx.get(url + "/metrics", headers=_h(keys["viewer"])).text
    assert not any(t in text for t in tokens)
    seen: dict[str, set[str]] = {}
    series = 0
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("paved_"):
            continue
        for s in fam.samples:
            series += 1
            for k, v in s.labels.items():
                seen.setdefault(k, set()).add(v)
    assert seen["endpoint"] <= ENDPOINTS | {OTHER}
    assert seen["team"] <= {"search", "late", OTHER}
    assert seen["cohort"] <= {"champion", "challenger", "shadow", OTHER}
    assert seen["version"] <= {"1", "2", "3", OTHER}
    assert seen["route"] <= ROUTES
    assert series < 2_000  # 240 hostile requests above, a few hundred fixed series at most


def test_a_team_added_after_start_gets_its_own_label(stack: dict[str, Any]) -> None:
    url, store = stack["url"], stack["store"]
    key, _ = store.create(team="late", roles=frozenset({Role.APP}), created_by="t")
    r = httpx.post(url + "/v1/completions", headers=_h(key), json={"model": "ok", "prompt": "x"})
    assert r.status_code == 200
    after = _scrape(url, stack["keys"]["viewer"])
    assert _value(after, "paved_requests_total", endpoint="ok", team="late") == 1


def test_the_sticky_user_comes_from_the_header_then_the_openai_field(
    stack: dict[str, Any],
) -> None:
    url, key, gw = stack["url"], stack["keys"]["app"], stack["gateway"]
    ok, risk = gw.routes.get("ok"), gw.routes.get("risk")
    users = [f"user-{i}" for i in range(40)]
    with httpx.Client(base_url=url, headers=_h(key)) as c:

        def version(endpoint: str, header: str | None, field: str | None) -> int:
            headers = {"x-paved-user": header} if header else {}
            if endpoint == "risk":
                r = c.post("/v2/models/risk/infer", headers=headers, json={"inputs": []})
            else:
                doc = {"model": "ok", "prompt": "x", **({"user": field} if field else {})}
                r = c.post("/v1/completions", headers=headers, json=doc)
            assert r.status_code == 200, r.text
            return int(r.headers["x-paved-model-version"])

        for u in users:
            assert version("ok", u, None) == choose(ok, u)[0]
            assert version("ok", None, u) == choose(ok, u)[0]
            assert version("risk", u, None) == choose(risk, u)[0]
        a = next(u for u in users if choose(ok, u)[0] == 1)
        b = next(u for u in users if choose(ok, u)[0] == 2)
        assert version("ok", a, b) == 1
        assert version("ok", b, a) == 2
    # Salted per endpoint: the two canaries do not put the same users on one side.
    assert [choose(ok, u)[1] for u in users] != [choose(risk, u)[1] for u in users]


def test_a_scrape_sees_every_gateway_process_on_the_port(tmp_path: Path) -> None:
    """Three gateway processes share one port (SO_REUSEPORT), as the gateway replicas on
    one node do; every scrape, whichever process answers it, counts every request."""
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    app = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]
    viewer = store.create(team="search", roles=frozenset({Role.VIEWER}), created_by="t")[0]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    root = Path(__file__).resolve().parents[3]
    with UvicornThread(trivial_replica) as replica:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.utils.gateway_process",
                    str(port),
                    f"sqlite:///{tmp_path / 'keys.db'}",
                    replica.address,
                    str(metrics_dir),
                ],
                env=env,
                cwd=root,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                assert p.stdout.readline().strip() == "ready"
            url = f"http://127.0.0.1:{port}"
            for _ in range(60):  # a new connection each: the kernel spreads them
                r = httpx.post(
                    url + "/v1/completions", headers=_h(app), json={"model": "ok", "prompt": "x"}
                )
                assert r.status_code == 200
            for _ in range(3):
                assert httpx.post(url + "/v1/completions", json={}).status_code == 401
            for _ in range(6):
                fams = _scrape(url, viewer)
                assert _value(fams, "paved_requests_total", endpoint="ok", status="2xx") == 60
                assert _value(fams, "paved_prompt_tokens_total", endpoint="ok") == 60 * 3
                assert (
                    _value(fams, "paved_responses_total", route="/v1/completions", code="401") == 3
                )
                assert _value(fams, "paved_request_duration_seconds_count", endpoint="ok") == 60
                assert _value(fams, "paved_queue_depth", endpoint="ok") == 0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
