"""The gateway in a real uvicorn server, with real keys, in front of trivial replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.limits import GatewayLimits
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.utils.servers import UvicornThread, trivial_replica

pytestmark = pytest.mark.integration


def _ep(name: str, team: str, champion: int, **spec: object) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": team},
            "spec": {"model": f"{name}-model", "champion": {"version": champion}, **spec},
        }
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    db = tmp_path_factory.mktemp("keys") / "keys.db"
    store = KeyStore(f"sqlite:///{db}")
    keys = {
        "search": store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0],
        "risk": store.create(team="risk", roles=frozenset({Role.APP}), created_by="t")[0],
        "viewer": store.create(team="search", roles=frozenset({Role.VIEWER}), created_by="t")[0],
    }
    endpoints = [
        _ep("chat", "search", 1, challenger={"version": 2, "weight": 0}),
        _ep("canary", "search", 1, challenger={"version": 2, "weight": 50, "sticky": True}),
        _ep(
            "tight",
            "search",
            1,
            limits={"max_tokens": 16, "max_n": 2, "max_logprobs": 1, "max_inflight": 2},
        ),
        _ep("risk", "risk", 3, access={"teams": ["search"]}),
    ]
    protocols = {"chat": "openai", "canary": "openai", "tight": "openai", "risk": "v2"}
    with UvicornThread(trivial_replica) as r1, UvicornThread(trivial_replica) as r2:
        directory = StaticDirectory(
            {
                ("chat", 1): [r1.address],
                ("chat", 2): [r2.address],
                ("canary", 1): [r1.address],
                ("canary", 2): [r2.address],
                ("tight", 1): [r1.address],
                ("risk", 3): [r2.address],
            }
        )
        gw = Gateway(
            routes=RouteTable.from_endpoints(endpoints, protocols),  # type: ignore[arg-type]
            directory=directory,
            keys=KeyCache(store.snapshot, refresh_s=0.5, miss_refresh_min_s=0.0),
            limits=GatewayLimits(max_body_bytes=4096, max_header_bytes=2048),
        )
        with UvicornThread(gw) as server:
            yield {"url": server.url, "keys": keys, "store": store, "gateway": gw}


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_openai_sdk_through_the_gateway(stack) -> None:
    client = openai.OpenAI(base_url=stack["url"] + "/v1", api_key=stack["keys"]["search"])
    raw = client.completions.with_raw_response.create(model="chat", prompt="hello", max_tokens=5)
    assert raw.headers["x-paved-model-version"] == "1"
    assert raw.headers["x-paved-cohort"] == "champion"
    completion = raw.parse()
    assert completion.choices[0].text == "hi"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5
    models = client.models.list()
    assert {m.id for m in models.data} == {"chat", "canary", "tight"}


def test_the_gateway_tells_replicas_who_is_calling(stack) -> None:
    r = httpx.post(
        stack["url"] + "/v1/completions",
        headers=_h(stack["keys"]["search"]),
        json={"model": "chat", "prompt": "x"},
    )
    seen = r.json()["seen"]
    assert seen == {
        "x-paved-endpoint": "chat",
        "x-paved-model-version": "1",
        "x-paved-cohort": "champion",
        "x-paved-team": "search",
    }


def test_streaming_relays_chunks_and_meters_usage(stack) -> None:
    url = stack["url"]
    with httpx.stream(
        "POST",
        url + "/v1/completions",
        headers=_h(stack["keys"]["search"]),
        json={"model": "chat", "prompt": "x", "stream": True},
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-paved-cohort"] == "champion"
        body = b"".join(r.iter_raw())
    assert b"paved-usage" not in body
    assert body.count(b"data: ") == 4
    assert body.endswith(b"data: [DONE]\n\n")
    metrics = httpx.get(url + "/metrics", headers=_h(stack["keys"]["viewer"])).text
    line = next(
        x
        for x in metrics.splitlines()
        if x.startswith("paved_completion_tokens_total{") and 'endpoint="chat"' in x
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert "paved_time_to_first_token_seconds_count" in metrics


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"authorization": "Basic abc"}, "Bearer"),
        ({"authorization": "Bearer pp-0123456789abcdef.nope"}, "invalid API key"),
        ({"authorization": "Bearer " + "x" * 40}, "invalid API key"),
    ],
)
def test_401_without_a_valid_key(stack, headers, message) -> None:
    for path in ("/v1/completions", "/v1/models", "/v2/models/risk/infer", "/metrics"):
        r = httpx.request(
            "POST" if "infer" in path or "compl" in path else "GET",
            stack["url"] + path,
            headers=headers,
            json={"model": "chat"},
        )
        assert r.status_code == 401, path
        assert message in r.text


def test_health_needs_no_key(stack) -> None:
    assert httpx.get(stack["url"] + "/v2/health/live").status_code == 200
    assert httpx.get(stack["url"] + "/v2/health/ready").status_code == 200


def test_404_for_other_teams_and_403_for_roles(stack) -> None:
    url, keys = stack["url"], stack["keys"]
    r = httpx.post(
        url + "/v1/completions", headers=_h(keys["risk"]), json={"model": "chat", "prompt": "x"}
    )
    assert r.status_code == 404  # as for an endpoint that does not exist: no name oracle
    assert r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(
        url + "/v1/completions", headers=_h(keys["viewer"]), json={"model": "chat", "prompt": "x"}
    )
    assert r.status_code == 403
    assert "app" in r.json()["error"]["message"]
    r = httpx.get(url + "/metrics", headers=_h(keys["search"]))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"model": "tight", "prompt": "x", "max_tokens": 17}, 400, "max_tokens", "limit of 16"),
        ({"model": "tight", "prompt": "x", "n": 3}, 400, "max_n", "limit of 2"),
        ({"model": "tight", "prompt": "x", "logprobs": 2}, 400, "max_logprobs", "limit of 1"),
        ({"model": "tight", "prompt": "x", "max_tokens": "9"}, 400, "max_tokens", "integer"),
        ({"model": "tight", "prompt": "x", "max_tokens": True}, 400, "max_tokens", "integer"),
        ({"model": "tight"}, 400, "prompt", "required"),
        ({"model": "nope", "prompt": "x"}, 404, "model_not_found", "does not exist"),
        ({"model": "risk", "prompt": "x"}, 400, "protocol", "v2 protocol"),
        ({"prompt": "x"}, 400, "model", "required"),
        ({"model": "tight", "prompt": "x" * 5000}, 400, "max_body_bytes", "4096 bytes"),
    ],
)
def test_limits_answer_4xx_naming_the_limit(stack, body, status, code, says) -> None:
    r = httpx.post(stack["url"] + "/v1/completions", headers=_h(stack["keys"]["search"]), json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert says in r.json()["error"]["message"], r.text


def test_malformed_json_and_oversized_headers(stack) -> None:
    url, key = stack["url"], stack["keys"]["search"]
    r = httpx.post(
        url + "/v1/completions",
        headers={**_h(key), "content-type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "json"
    r = httpx.post(
        url + "/v1/completions",
        headers={**_h(key), "x-big": "y" * 3000},
        json={"model": "chat", "prompt": "x"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "max_header_bytes"


def test_429_with_retry_after_past_max_inflight(stack) -> None:
    """Two slow requests hold both slots of "tight"; every request past them is refused
    (no reliance on requests overlapping by chance: the slots are seen held first)."""
    url, key, gw = stack["url"], stack["keys"]["search"], stack["gateway"]
    slow = {"model": "tight", "prompt": "x", "sleep": 3}
    holders = [
        threading.Thread(
            target=httpx.post,
            args=(url + "/v1/completions",),
            kwargs={"headers": _h(key), "json": slow, "timeout": 30},
        )
        for _ in range(2)
    ]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 20
    while gw.admission.inflight("tight") < 2:
        assert time.monotonic() < deadline, "the slow requests never got in"
        time.sleep(0.01)
    refused = [
        httpx.post(url + "/v1/completions", headers=_h(key), json={"model": "tight", "prompt": "x"})
        for _ in range(3)
    ]
    for t in holders:
        t.join()
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert int(refused[0].headers["retry-after"]) >= 1
    assert refused[0].json()["error"]["code"] == "max_inflight"


def test_canary_split_and_stickiness(stack) -> None:
    url, key = stack["url"], stack["keys"]["search"]
    with httpx.Client() as c:
        cohorts = [
            c.post(
                url + "/v1/completions", headers=_h(key), json={"model": "canary", "prompt": "x"}
            ).headers["x-paved-cohort"]
            for _ in range(200)
        ]
        sticky = {
            c.post(
                url + "/v1/completions",
                headers=_h(key),
                json={"model": "canary", "prompt": "x", "user": "u-42"},
            ).headers["x-paved-model-version"]
            for _ in range(20)
        }
    assert 60 <= cohorts.count("challenger") <= 140
    assert len(sticky) == 1


def test_v2_infer_is_forwarded(stack) -> None:
    r = httpx.post(
        stack["url"] + "/v2/models/risk/infer",
        headers=_h(stack["keys"]["risk"]),
        json={"inputs": []},
    )
    assert r.status_code == 200
    assert r.headers["x-paved-model-version"] == "3"
    assert r.json()["seen"]["x-paved-endpoint"] == "risk"


def test_new_keys_work_at_once_and_revoked_keys_stop(stack) -> None:
    store: KeyStore = stack["store"]
    key, record = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")
    r = httpx.post(
        stack["url"] + "/v1/completions", headers=_h(key), json={"model": "chat", "prompt": "x"}
    )
    assert r.status_code == 200
    store.revoke(record.key_id)
    deadline = time.monotonic() + 30  # the cache refreshes every 0.5 s here
    while True:
        r = httpx.post(
            stack["url"] + "/v1/completions", headers=_h(key), json={"model": "chat", "prompt": "x"}
        )
        if r.status_code != 200:
            break
        assert time.monotonic() < deadline, "the revoked key kept working"
        time.sleep(0.05)
    assert r.status_code == 401


# Metric label bounds under hostile input: tests/integration/serving/test_gateway_metrics.py


def test_replicas_refuse_callers_without_the_internal_token() -> None:
    from serving.internal_auth import new_token, require_token

    token = new_token()
    with UvicornThread(require_token(trivial_replica, token)) as replica:
        body = {"model": "chat", "prompt": "x"}
        assert httpx.post(replica.url + "/v1/completions", json=body).status_code == 403
        wrong = {"x-paved-internal-token": "nope"}
        assert (
            httpx.post(replica.url + "/v1/completions", json=body, headers=wrong).status_code == 403
        )
        ok = {"x-paved-internal-token": token}
        assert httpx.post(replica.url + "/v1/completions", json=body, headers=ok).status_code == 200
