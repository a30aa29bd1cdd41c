"""The gateway's answers when it refuses or fails: pinned v2 versions, no endpoint-name
oracle across teams, every error in the platform's shape, and the request id on every
response. The real gateway under uvicorn, real keys, trivial replicas (no Ray)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.utils.servers import UvicornThread, trivial_replica

pytestmark = pytest.mark.integration

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _ep(name: str, team: str, champion: int, **spec: object) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": team},
            "spec": {"model": f"{name}-model", "champion": {"version": champion}, **spec},
        }
    )


class FaultyDirectory(StaticDirectory):
    """Addresses as StaticDirectory, except that endpoints named ``broken*`` raise an
    unexpected exception (a bug's stand-in): what the gateway answers then."""

    def targets(self, endpoint: str, version: int) -> Sequence[str]:
        if endpoint.startswith("broken"):
            raise RuntimeError("a bug in the directory")
        return super().targets(endpoint, version)

    def pick(self, endpoint: str, version: int) -> str:
        return self.targets(endpoint, version)[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    keys = {
        team: store.create(team=team, roles=frozenset({Role.APP}), created_by="t")[0]
        for team in ("search", "risk")
    }
    endpoints = [
        _ep("chat", "search", 1),
        _ep("hidden", "risk", 1),  # openai, risk only
        _ep("scores", "risk", 3, challenger={"version": 4, "weight": 0}),
        _ep("shadowed", "risk", 5, challenger={"version": 6, "mode": "shadow"}),
        _ep("secret", "risk", 1),  # v2, risk only
        _ep("broken", "search", 1),
        _ep("broken-v2", "search", 1),
    ]
    protocols = {
        "chat": "openai",
        "hidden": "openai",
        "scores": "v2",
        "shadowed": "v2",
        "secret": "v2",
        "broken": "openai",
        "broken-v2": "v2",
    }
    with UvicornThread(trivial_replica) as r1, UvicornThread(trivial_replica) as r2:
        targets = {
            ("chat", 1): [r1.address],
            ("hidden", 1): [r1.address],
            ("scores", 3): [r1.address],
            ("scores", 4): [r2.address],
            ("shadowed", 5): [r1.address],
            ("shadowed", 6): [r2.address],
            ("secret", 1): [r1.address],
            ("broken", 1): [r1.address],
            ("broken-v2", 1): [r1.address],
        }
        gw = Gateway(
            routes=RouteTable.from_endpoints(endpoints, protocols),  # type: ignore[arg-type]
            directory=FaultyDirectory(targets),
            keys=KeyCache(store.snapshot, refresh_s=60, miss_refresh_min_s=60),
        )
        with UvicornThread(gw) as server:
            yield {"url": server.url, "keys": keys}


def _h(key: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **extra}


# ---------------------------------------------------------------- pinned versions


@pytest.mark.parametrize(("endpoint", "version"), [("scores", 3), ("scores", 4), ("shadowed", 6)])
def test_a_pinned_version_the_endpoint_serves_answers(
    stack: dict[str, Any], endpoint: str, version: int
) -> None:
    r = httpx.post(
        f"{stack['url']}/v2/models/{endpoint}/versions/{version}/infer",
        headers=_h(stack["keys"]["risk"]),
        json={"inputs": []},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-paved-model-version"] == str(version)
    assert r.json()["seen"]["x-paved-model-version"] == str(version)  # the replica's own
    ready = httpx.get(
        f"{stack['url']}/v2/models/{endpoint}/versions/{version}/ready",
        headers=_h(stack["keys"]["risk"]),
    )
    assert ready.json() == {"name": endpoint, "ready": True}


@pytest.mark.parametrize("version", ["999", "2", "03", "abc", "", "-3", "3.0", "\u0663"])
def test_a_version_the_endpoint_does_not_serve_is_404(stack: dict[str, Any], version: str) -> None:
    for method, tail in (("POST", "infer"), ("GET", "ready")):
        r = httpx.request(
            method,
            f"{stack['url']}/v2/models/scores/versions/{version}/{tail}",
            headers=_h(stack["keys"]["risk"]),
            json={"inputs": []},
        )
        assert r.status_code == 404, (version, r.text)
        assert r.json()["error"].endswith("(rule: model_version)")  # the v2 error shape
        assert "x-paved-model-version" not in r.headers


# ---------------------------------------------------------------- no endpoint-name oracle


def test_another_teams_endpoint_looks_like_no_endpoint(stack: dict[str, Any]) -> None:
    url, search = stack["url"], stack["keys"]["search"]

    def openai(model: str, tail: str) -> httpx.Response:
        body = {"model": model, "prompt": "x"}
        return httpx.post(url + "/v1/completions", headers=_h(search), json=body)

    def v2(model: str, tail: str) -> httpx.Response:
        method = "POST" if tail.endswith("/infer") else "GET"
        return httpx.request(
            method, f"{url}/v2/models/{model}{tail}", headers=_h(search), json={"inputs": []}
        )

    cases = [(openai, "hidden", ""), (openai, "scores", "")] + [
        (v2, name, tail)
        for name in ("secret", "scores")
        for tail in ("/infer", "/ready", "", "/versions/3/infer", "/versions/999/infer")
    ]
    for call, theirs, tail in cases:
        seen, unknown = call(theirs, tail), call("nope00", tail)
        assert seen.status_code == unknown.status_code == 404
        assert seen.json() == _renamed(unknown.json(), "nope00", theirs), (theirs, tail)


def _renamed(doc: Any, old: str, new: str) -> Any:
    if isinstance(doc, dict):
        return {k: _renamed(v, old, new) for k, v in doc.items()}
    return doc.replace(old, new) if isinstance(doc, str) else doc


def test_the_owning_team_still_reaches_its_endpoints(stack: dict[str, Any]) -> None:
    url, risk = stack["url"], stack["keys"]["risk"]
    r = httpx.post(
        url + "/v1/completions", headers=_h(risk), json={"model": "hidden", "prompt": "x"}
    )
    assert r.status_code == 200
    assert httpx.post(url + "/v2/models/secret/infer", headers=_h(risk), json={}).status_code == 200


# ---------------------------------------------------------------- the platform's error shape


def test_an_unexpected_exception_is_a_500_in_the_protocols_shape(stack: dict[str, Any]) -> None:
    url, search = stack["url"], stack["keys"]["search"]
    r = httpx.post(
        url + "/v1/completions", headers=_h(search), json={"model": "broken", "prompt": "x"}
    )
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "internal"
    assert r.json()["error"]["type"] == "server_error"
    assert "bug" not in r.text  # the exception's text stays in the log
    assert HEX_ID.fullmatch(r.headers["x-request-id"])
    assert r.headers["x-paved-model-version"] == "1"  # routed before it failed
    v2 = httpx.post(url + "/v2/models/broken-v2/infer", headers=_h(search), json={})
    assert v2.status_code == 500
    assert v2.json() == {"error": "internal error (rule: internal)"}
    # The gateway keeps serving.
    ok = httpx.post(
        url + "/v1/completions", headers=_h(search), json={"model": "chat", "prompt": "x"}
    )
    assert ok.status_code == 200


def test_unknown_paths_are_404s_in_the_protocols_shape(stack: dict[str, Any]) -> None:
    url, search = stack["url"], stack["keys"]["search"]
    r = httpx.get(url + "/v1/embeddings", headers=_h(search))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "route")
    r = httpx.get(url + "/v2/nothing/" + "x" * 5000, headers=_h(search))
    assert r.status_code == 404
    assert len(r.json()["error"]) < 200  # the path is quoted only in part


def test_not_ready_without_routes(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    gw = Gateway(routes=RouteTable(), directory=StaticDirectory({}), keys=KeyCache(store.snapshot))
    with UvicornThread(gw) as server:
        r = httpx.get(server.url + "/v2/health/ready")
        assert (r.status_code, r.json()) == (503, {"ready": False})
        assert HEX_ID.fullmatch(r.headers["x-request-id"])
        assert httpx.get(server.url + "/v2/health/live").status_code == 200


# ---------------------------------------------------------------- the request id


def test_every_response_carries_a_request_id(stack: dict[str, Any]) -> None:
    url, search = stack["url"], stack["keys"]["search"]
    body = {"model": "chat", "prompt": "x"}
    responses = [
        httpx.post(url + "/v1/completions", headers=_h(search), json=body),
        httpx.post(url + "/v1/completions", json=body),  # 401
        httpx.post(url + "/v1/completions", headers=_h(search), json={"model": "chat"}),  # 400
        httpx.post(url + "/v1/completions", headers=_h(search), json=body | {"model": "x"}),
        httpx.get(url + "/v1/models", headers=_h(search)),
        httpx.get(url + "/metrics", headers=_h(search)),  # 403
        httpx.get(url + "/v2/health/live"),
        httpx.get(url + "/v2/health/ready"),
        httpx.post(url + "/v2/models/secret/infer", headers=_h(stack["keys"]["risk"]), json={}),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(HEX_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in responses] == [200, 401, 400, 404, 200, 403, 200, 200, 200]
    assert responses[0].headers["x-paved-model-version"] == "1"


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("req-42", True), ("a.b:c_d-9", True), ("x" * 128, True), ("x" * 129, False),
     ("has space", False), ("naïve", False), ("", False), ("a\tb", False)],
)  # fmt: skip
def test_a_valid_client_request_id_is_echoed(
    stack: dict[str, Any], sent: str, echoed: bool
) -> None:
    headers = [(b"x-request-id", sent.encode("utf-8"))]
    for request in (
        httpx.Request("GET", stack["url"] + "/v2/health/live", headers=headers),
        httpx.Request("GET", stack["url"] + "/v1/models", headers=headers),  # 401
    ):
        with httpx.Client() as client:
            r = client.send(request)
        got = r.headers["x-request-id"]
        assert (got == sent) is echoed
        if not echoed:
            assert HEX_ID.fullmatch(got)
