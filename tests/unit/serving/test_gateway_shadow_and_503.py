"""The gateway's shadow mirroring and every path to a 503, against the real gateway under
uvicorn with real keys and trivial replicas on loopback (no Ray, no model).

Shadow: the champion answers the client; the challenger gets the same request marked
``x-paved-cohort: shadow``, measured under the ``shadow`` cohort and dropped; a failing
or slow challenger never touches the client's answer, and at most 64 mirrors are in
flight. 503s: draining, the gateway's in-flight bound, no ready replica, an unreachable
replica, a replica that drops the connection; each with ``Retry-After``, the
protocol's error shape and the request id.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.limits import GatewayLimits
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.utils.servers import UvicornThread, free_port, trivial_replica

pytestmark = pytest.mark.unit

HEX_ID = re.compile(r"[0-9a-f]{32}")


class Recording:
    """A trivial replica that records each request it gets; ``hold`` blocks it until set."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.hold.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await trivial_replica(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"path": scope["path"], "body": body, "headers": headers})
        await asyncio.to_thread(self.hold.wait)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await trivial_replica(scope, replay, send)


class DroppingServer:
    """Accepts a connection, reads the request, closes without answering."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    def close(self) -> None:
        self.sock.close()


def _ep(name: str, champion: int, **spec: object) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": "search"},
            "spec": {"model": f"{name}-model", "champion": {"version": champion}, **spec},
        }
    )


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    app = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]
    viewer = store.create(team="search", roles=frozenset({Role.VIEWER}), created_by="t")[0]
    shadow = {"mode": "shadow"}
    endpoints = [
        _ep("mirrored", 1, challenger={"version": 2, **shadow}),
        _ep("mirrored-v2", 1, challenger={"version": 2, **shadow}),
        _ep("lost-shadow", 1, challenger={"version": 2, **shadow}),
        _ep("held", 1, challenger={"version": 2, **shadow}),
        _ep("plain", 1),
        _ep("plain-v2", 1),
        _ep("empty", 1),
        _ep("empty-v2", 1),
        _ep("closed", 1),
        _ep("dropping", 1),
    ]
    protocols = {e.name: "v2" if e.name.endswith("v2") else "openai" for e in endpoints}
    champion, challenger, held = Recording(), Recording(), Recording()
    dropping = DroppingServer()
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    with (
        UvicornThread(champion) as r1,
        UvicornThread(challenger) as r2,
        UvicornThread(held) as r3,
    ):
        directory = StaticDirectory(
            {
                ("mirrored", 1): [r1.address],
                ("mirrored", 2): [r2.address],
                ("mirrored-v2", 1): [r1.address],
                ("mirrored-v2", 2): [r2.address],
                ("lost-shadow", 1): [r1.address],
                ("lost-shadow", 2): [closed],
                ("held", 1): [r1.address],
                ("held", 2): [r3.address],
                ("plain", 1): [r1.address],
                ("plain-v2", 1): [r1.address],
                ("empty", 1): [],
                ("empty-v2", 1): [],
                ("closed", 1): [closed],
                ("dropping", 1): [dropping.address],
            }
        )
        gw = Gateway(
            routes=RouteTable.from_endpoints(endpoints, protocols),  # type: ignore[arg-type]
            directory=directory,
            keys=KeyCache(store.snapshot),
            limits=GatewayLimits(max_inflight=2),
        )
        with UvicornThread(gw) as server:
            yield {
                "url": server.url,
                "app": app,
                "viewer": viewer,
                "gateway": gw,
                "champion": champion,
                "challenger": challenger,
                "held": held,
            }
    dropping.close()


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _metric(stack: dict[str, Any], endpoint: str, cohort: str, code: str) -> float:
    text = httpx.get(stack["url"] + "/metrics", headers=_h(stack["viewer"])).text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("paved_requests_total{")
            and f'endpoint="{endpoint}"' in line
            and f'cohort="{cohort}"' in line
            and f'status="{code}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- shadow mirroring


def _mirrors(stack: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return [s for s in stack["challenger"].seen if tag.encode() in s["body"]]


@pytest.mark.parametrize("stream", [False, True])
def test_the_champion_answers_and_the_challenger_gets_a_mirror(
    stack: dict[str, Any], stream: bool
) -> None:
    tag = f"mirror-{stream}"
    body = {"model": "mirrored", "prompt": "x", "tag": tag, "stream": stream}
    before = _metric(stack, "mirrored", "shadow", "2xx")
    r = httpx.post(stack["url"] + "/v1/completions", headers=_h(stack["app"]), json=body)
    assert r.status_code == 200
    assert (r.headers["x-paved-model-version"], r.headers["x-paved-cohort"]) == ("1", "champion")
    wait_for(lambda: len(_mirrors(stack, tag)) == 1, "the mirror")
    (mirror,) = _mirrors(stack, tag)
    assert mirror["path"] == "/v1/completions"
    assert json.loads(mirror["body"]) == body  # the same request, byte for byte
    assert mirror["headers"]["x-paved-cohort"] == "shadow"
    assert "authorization" not in mirror["headers"]  # the caller's key stays at the gateway
    wait_for(lambda: _metric(stack, "mirrored", "shadow", "2xx") == before + 1, "shadow metric")


def test_a_v2_mirror_keeps_the_binary_header(stack: dict[str, Any]) -> None:
    tag = b"mirror-binary"
    payload = b'{"inputs": [], "tag": "mirror-binary"}'
    r = httpx.post(
        stack["url"] + "/v2/models/mirrored-v2/infer",
        headers={
            **_h(stack["app"]),
            "inference-header-content-length": str(len(payload)),
            "content-type": "application/octet-stream",
        },
        content=payload,
    )
    assert r.status_code == 200
    wait_for(lambda: any(tag in s["body"] for s in stack["challenger"].seen), "the v2 mirror")
    mirror = next(s for s in stack["challenger"].seen if tag in s["body"])
    assert mirror["path"] == "/v2/models/mirrored-v2/infer"
    assert mirror["headers"]["inference-header-content-length"] == str(len(payload))


def test_a_failing_challenger_never_touches_the_clients_answer(stack: dict[str, Any]) -> None:
    before = _metric(stack, "lost-shadow", "shadow", "5xx")
    for _ in range(3):
        r = httpx.post(
            stack["url"] + "/v1/completions",
            headers=_h(stack["app"]),
            json={"model": "lost-shadow", "prompt": "x"},
        )
        assert r.status_code == 200
        assert r.json()["choices"][0]["text"] == "hi"
    wait_for(lambda: _metric(stack, "lost-shadow", "shadow", "5xx") == before + 3, "failures")


def test_at_most_64_mirrors_are_in_flight(stack: dict[str, Any]) -> None:
    held: Recording = stack["held"]
    gw: Gateway = stack["gateway"]
    held.hold.clear()
    try:
        with httpx.Client(base_url=stack["url"], headers=_h(stack["app"])) as c:
            for i in range(70):
                body = {"model": "held", "prompt": "x", "tag": f"held-{i}"}
                assert c.post("/v1/completions", json=body).status_code == 200
        wait_for(lambda: len(held.seen) == 64, "64 held mirrors")
        assert len(gw.shadow.tasks) == 64
    finally:
        held.hold.set()
    wait_for(lambda: not gw.shadow.tasks, "the mirrors to finish")
    assert len(held.seen) == 64  # the 6 past the bound were never sent


# ---------------------------------------------------------------- every 503


def _assert_503(r: httpx.Response, rule: str | None, protocol: str) -> None:
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert HEX_ID.fullmatch(r.headers["x-request-id"])
    assert r.headers["x-paved-model-version"] == "1"  # routed before it was refused
    if protocol == "openai":
        error = r.json()["error"]
        assert error["type"] == "service_unavailable_error"
        if rule is not None:
            assert error["code"] == rule
    else:
        assert isinstance(r.json()["error"], str)
        if rule is not None:
            assert r.json()["error"].endswith(f"(rule: {rule})")


def _call(stack: dict[str, Any], endpoint: str, **body: Any) -> httpx.Response:
    if endpoint.endswith("v2"):
        url = f"{stack['url']}/v2/models/{endpoint}/infer"
        return httpx.post(url, headers=_h(stack["app"]), json={"inputs": [], **body})
    payload = {"model": endpoint, "prompt": "x", **body}
    return httpx.post(stack["url"] + "/v1/completions", headers=_h(stack["app"]), json=payload)


@pytest.mark.parametrize(("endpoint", "protocol"), [("empty", "openai"), ("empty-v2", "v2")])
def test_503_when_no_replica_is_ready(stack: dict[str, Any], endpoint: str, protocol: str) -> None:
    _assert_503(_call(stack, endpoint), None, protocol)
    assert "no ready replica" in _call(stack, endpoint).text


def test_503_when_the_replica_is_unreachable(stack: dict[str, Any]) -> None:
    _assert_503(_call(stack, "closed"), "replica_unreachable", "openai")


def test_503_when_the_replica_drops_the_request(stack: dict[str, Any]) -> None:
    r = _call(stack, "dropping")
    _assert_503(r, None, "openai")
    assert "dropped" in r.json()["error"]["message"]


def test_503_past_the_gateways_in_flight_bound(stack: dict[str, Any]) -> None:
    gw: Gateway = stack["gateway"]
    held: Recording = stack["champion"]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as c:
            url = stack["url"] + "/v1/completions"
            body = {"model": "plain", "prompt": "x"}
            held.hold.clear()
            first = [
                asyncio.ensure_future(c.post(url, headers=_h(stack["app"]), json=body))
                for _ in range(2)
            ]
            while gw.admission.in_flight < 2:
                await asyncio.sleep(0.01)
            refused = [
                await c.post(url, headers=_h(stack["app"]), json=body),
                await c.post(
                    stack["url"] + "/v2/models/plain-v2/infer",
                    headers=_h(stack["app"]),
                    json={"inputs": []},
                ),
            ]
            held.hold.set()
            return [*refused, *(await asyncio.gather(*first))]

    try:
        openai, v2, *admitted = asyncio.run(run())
    finally:
        held.hold.set()
    _assert_503(openai, "gateway_inflight", "openai")
    _assert_503(v2, "gateway_inflight", "v2")
    assert [r.status_code for r in admitted] == [200, 200]


def test_503_while_draining(tmp_path: Path) -> None:
    """Its own gateway: draining is for good."""
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    key = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]
    with UvicornThread(trivial_replica) as replica:
        gw = Gateway(
            routes=RouteTable.from_endpoints(
                [_ep("plain", 1), _ep("plain-v2", 1)], {"plain": "openai", "plain-v2": "v2"}
            ),
            directory=StaticDirectory(
                {("plain", 1): [replica.address], ("plain-v2", 1): [replica.address]}
            ),
            keys=KeyCache(store.snapshot),
        )
        with UvicornThread(gw) as server:
            stack = {"url": server.url, "app": key}
            assert _call(stack, "plain").status_code == 200
            assert httpx.get(server.url + "/v2/health/ready").status_code == 200
            gw.draining = True  # what drain() sets before it waits for requests in flight
            _assert_503(_call(stack, "plain"), None, "openai")
            _assert_503(_call(stack, "plain-v2"), None, "v2")
            assert "shutting down" in _call(stack, "plain").text
            ready = httpx.get(server.url + "/v2/health/ready")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
