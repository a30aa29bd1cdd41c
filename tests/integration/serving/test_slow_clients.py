"""Slow and idle clients cannot hold the gateway's connections: the gateway's own server
(serving/http_server.py) closes idle and half-sent connections at their deadlines and
refuses connections past its bound, while a client that sends requests is served."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.routing import RouteTable
from serving.http_server import ConnectionLimits, EmbeddedServer
from serving.keys import KeyStore
from tests.utils.servers import UvicornThread, trivial_replica

pytestmark = pytest.mark.integration

MAX_CONNECTIONS = 40
LIMITS = ConnectionLimits(
    header_timeout_s=1.0,
    body_timeout_s=1.0,
    keep_alive_timeout_s=60,
    max_connections=MAX_CONNECTIONS,
)
WAIT_S = 30.0  # how long a test waits for something that must happen (a guard, not a bound)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    key = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]
    ep = Endpoint.model_validate(
        {
            "metadata": {"name": "ok", "team": "search"},
            "spec": {"model": "m", "champion": {"version": 1}},
        }
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with UvicornThread(trivial_replica) as replica:
        gw = Gateway(
            routes=RouteTable.from_endpoints([ep], {"ok": "openai"}),
            directory=StaticDirectory({("ok", 1): [replica.address]}),
            keys=KeyCache(store.snapshot),
        )

        async def start() -> EmbeddedServer:
            server = EmbeddedServer(gw, "127.0.0.1", 0, limits=LIMITS)
            server.start()
            await server.wait_started()
            return server

        server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield {
                "url": f"http://{server.address}",
                "port": server.port,
                "key": key,
                "open": lambda: len(server.server.server_state.connections),
            }
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def _connect(port: int, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    if first:
        s.sendall(first)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server closes the connection (reads until EOF, within WAIT_S)."""
    s.settimeout(WAIT_S)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _ok(client: httpx.Client, key: str) -> None:
    r = client.post(
        "/v1/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "ok", "prompt": "x"},
    )
    assert r.status_code == 200, r.text


def test_idle_and_half_sent_connections_are_closed(gateway: dict[str, Any]) -> None:
    port = gateway["port"]
    head = b"POST /v1/completions HTTP/1.1\r\nhost: x\r\n"  # headers never finish
    body = (
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + gateway["key"].encode() + b"\r\n"
        b"content-length: 100\r\n\r\n" + b'{"model": "ok"'  # body never finishes
    )
    silent = [_connect(port) for _ in range(10)]
    slow_head = [_connect(port, head) for _ in range(10)]
    slow_body = [_connect(port, body) for _ in range(10)]
    try:
        for s in silent + slow_head + slow_body:
            assert _closed_by_server(s)
    finally:
        for s in silent + slow_head + slow_body:
            s.close()


def test_connections_past_the_bound_are_refused_while_clients_are_served(
    gateway: dict[str, Any],
) -> None:
    url, port, key = gateway["url"], gateway["port"], gateway["key"]
    with httpx.Client(base_url=url, timeout=WAIT_S) as client:
        _ok(client, key)  # a keep-alive connection, open before the flood
        flood = [_connect(port) for _ in range(MAX_CONNECTIONS - 1)]
        try:
            deadline = time.monotonic() + WAIT_S
            while gateway["open"]() < MAX_CONNECTIONS:  # the client's and the flood's
                assert time.monotonic() < deadline, "the flood never connected"
                time.sleep(0.01)
            extra = _connect(port)
            assert _closed_by_server(extra)  # past the bound: closed at once
            extra.close()
            _ok(client, key)  # the client that was already connected is still served
        finally:
            for s in flood:
                s.close()
    # Once the flood is gone, new clients are served again.
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with httpx.Client(base_url=url, timeout=WAIT_S) as client:
                _ok(client, key)
            break
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
            assert time.monotonic() < deadline, "new clients were never served again"
            time.sleep(0.05)
