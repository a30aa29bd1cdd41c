"""The gateway under uvicorn when replicas or clients misbehave, against trivial replicas.

Replicas that die or stall mid-stream, clients that leave, replicas that refuse
connections: the client's stream always ends in OpenAI's shape with ``[DONE]``, the
admission slot comes back as soon as the client is gone, the replica sees the
connection close (which is what aborts a real generation), and a request is sent to a
second replica only when the first never received it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest

from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.limits import GatewayLimits
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.utils.recording import RecordingGateway
from tests.utils.servers import REPLICA_EVENTS, UvicornThread, free_port, trivial_replica

pytestmark = pytest.mark.integration

WAIT_S = 20.0  # liveness bound for polls; far below the stall and idle limits used


def _ep(name: str) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "team": "search"},
            "spec": {"model": f"{name}-model", "champion": {"version": 1}},
        }
    )


Stack = Callable[..., AbstractContextManager[tuple[str, RecordingGateway]]]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyStore, str]:
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}")
    return store, store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    with UvicornThread(trivial_replica) as a, UvicornThread(trivial_replica) as b:
        yield [a.address, b.address]


@pytest.fixture
def gateway(key: tuple[KeyStore, str]) -> Stack:
    """A gateway in front of the given replica addresses, as endpoint ``m``."""
    store, _ = key

    @contextmanager
    def start(targets: list[str], **limits: Any) -> Iterator[tuple[str, RecordingGateway]]:
        gw = RecordingGateway(
            routes=RouteTable.from_endpoints([_ep("m")], {"m": "openai"}),
            directory=StaticDirectory({("m", 1): targets}),
            keys=KeyCache(store.snapshot, refresh_s=0.5, miss_refresh_min_s=0.0),
            limits=GatewayLimits(**limits),
        )
        with UvicornThread(gw) as server:
            yield server.url, gw

    return start


def _post(key: tuple[KeyStore, str], **body: Any) -> dict[str, Any]:
    return {
        "headers": {"authorization": f"Bearer {key[1]}"},
        "json": {"model": "m", "prompt": "x", **body},
    }


def _events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body
    return body[:-2].split(b"\n\n")


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# ------------------------------------------------------------- streams end cleanly


def test_a_replica_dying_mid_stream_ends_the_stream_with_an_error_and_done(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    with gateway(replicas[:1]) as (url, gw):
        kw = _post(key, stream=True, chunks=3, die_after=1, tag="die")
        with httpx.stream("POST", url + "/v1/completions", **kw) as r:
            assert r.status_code == 200
            body = r.read()
    events = _events(body)
    assert json.loads(events[0][6:])["choices"][0]["text"] == "t0"
    error = json.loads(events[1].removeprefix(b"data: "))
    assert error["error"]["code"] == "replica_stream_broken"
    assert error["error"]["type"] == "server_error"
    assert events[2:] == [b"data: [DONE]"]
    assert gw.outcomes[-1].status == 502
    assert gw.admission.in_flight == 0


def test_a_stalled_stream_times_out_with_an_error_and_the_replica_is_let_go(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    with gateway(replicas[:1], stream_idle_timeout_s=0.5) as (url, gw):
        kw = _post(key, stream=True, chunks=3, stall_after=1, tag="stall")
        with httpx.stream("POST", url + "/v1/completions", **kw) as r:
            body = r.read()
        events = _events(body)
        assert len(events) == 3
        assert json.loads(events[1][6:])["error"]["code"] == "stream_idle_timeout"
        assert events[2] == b"data: [DONE]"
        assert gw.outcomes[-1].status == 504
        _until(lambda: REPLICA_EVENTS["stall:disconnect"] == 1, "the replica was not let go")


def test_a_client_leaving_mid_stream_frees_its_slot_and_closes_the_upstream(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    with gateway(replicas[:1], stream_idle_timeout_s=3600) as (url, gw):
        kw = _post(key, stream=True, chunks=3, stall_after=2, tag="leave")
        with httpx.stream("POST", url + "/v1/completions", **kw) as r:
            reader = r.iter_raw()  # kept: a dropped iterator closes the connection
            assert next(reader).startswith(b"data: {")
            assert gw.admission.in_flight == 1
        _until(lambda: gw.admission.in_flight == 0, "the admission slot was not released")
        _until(lambda: REPLICA_EVENTS["leave:disconnect"] == 1, "the upstream stayed open")
        _until(lambda: bool(gw.outcomes), "no outcome recorded")
        out = gw.outcomes[-1]
        assert out.client_gone
        assert out.status == 499
        # metered from what the replica says it generated up to the abort, not zero
        assert out.usage_known
        assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (4, 2)


def test_a_client_leaving_before_a_plain_answer_frees_its_slot_and_closes_the_upstream(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    with gateway(replicas[:1]) as (url, gw):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                url + "/v1/completions",
                timeout=httpx.Timeout(10, read=0.5),
                **_post(key, sleep=3600, tag="unary-leave"),
            )
        _until(lambda: gw.admission.in_flight == 0, "the admission slot was not released")
        _until(lambda: REPLICA_EVENTS["unary-leave:disconnect"] == 1, "the upstream stayed open")
        assert gw.outcomes[-1].client_gone


def test_a_replica_whose_engine_failed_is_metered_and_its_error_relayed(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    with gateway(replicas[:1]) as (url, gw):
        kw = _post(key, stream=True, chunks=5, fail_after=2)
        with httpx.stream("POST", url + "/v1/completions", **kw) as r:
            body = r.read()
    events = _events(body)
    assert len(events) == 4
    assert json.loads(events[2][6:])["error"]["message"] == "generation failed"
    assert events[3] == b"data: [DONE]"
    out = gw.outcomes[-1]
    assert out.usage_known
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (4, 2)


# ------------------------------------------------------------- balancing and retries


def test_a_refused_connection_is_retried_on_another_replica_and_ejected(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with gateway([dead, replicas[0]]) as (url, gw):
        for i in range(8):
            r = httpx.post(url + "/v1/completions", **_post(key, tag=f"retry{i}"))
            assert r.status_code == 200
            assert REPLICA_EVENTS[f"retry{i}:request"] == 1
            kw = _post(key, stream=True, tag=f"retry-stream{i}")
            with httpx.stream("POST", url + "/v1/completions", **kw) as s:
                assert s.read().endswith(b"data: [DONE]\n\n")
        assert gw.balancer.ejected(dead)
        assert not gw.balancer.ejected(replicas[0])


def test_every_replica_refusing_answers_503(gateway: Stack, key: tuple[KeyStore, str]) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with gateway(dead) as (url, gw):
        r = httpx.post(url + "/v1/completions", **_post(key))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "replica_unreachable"
        assert all(gw.balancer.ejected(d) for d in dead)


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_that_reached_a_replica_is_never_sent_again(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str], stream: bool
) -> None:
    tag = f"once-{stream}"
    body = {"stream": True, "die_after": 0} if stream else {"die": True}
    with gateway(replicas) as (url, _):
        r = httpx.post(url + "/v1/completions", **_post(key, tag=tag, **body))
    assert REPLICA_EVENTS[f"{tag}:request"] == 1
    if stream:
        assert r.status_code == 200
        assert b'"code":"replica_stream_broken"' in r.content
        assert r.content.endswith(b"data: [DONE]\n\n")
    else:
        assert r.status_code in (502, 503)
        assert r.json()["error"]["code"] == "replica_dropped"


# ------------------------------------------------------------- timings and usage


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_time_to_first_token_is_the_first_content_not_the_role_chunk(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str], path: str
) -> None:
    gap = 0.3  # the replica waits this long before each content chunk
    with gateway(replicas[:1]) as (url, gw):
        kw = _post(key, stream=True, chunks=4, gap=gap)
        if path.endswith("chat/completions"):
            kw["json"] = {"model": "m", "messages": [{"role": "user", "content": "x"}]} | {
                k: v for k, v in kw["json"].items() if k not in ("model", "prompt")
            }
        with httpx.stream("POST", url + path, **kw) as r:
            assert r.status_code == 200
            r.read()
    out = gw.outcomes[-1]
    assert out.ttft_s is not None
    # a role chunk sent at once does not count as the first token (half the gap: timers
    # may fire a little early)
    assert out.ttft_s >= gap / 2
    assert out.itl_s is not None
    assert out.itl_s >= gap / 2
    assert out.usage.completion_tokens == 4
    assert out.usage_known


def test_inter_token_latency_is_per_sequence_when_several_are_generated(
    gateway: Stack, replicas: list[str], key: tuple[KeyStore, str]
) -> None:
    gap = 0.3  # between the chunks; each carries a token of each of the 4 sequences
    with gateway(replicas[:1]) as (url, gw):
        kw = _post(key, stream=True, chunks=4, gap=gap, sequences=4, n=4)
        with httpx.stream("POST", url + "/v1/completions", **kw) as r:
            r.read()
    out = gw.outcomes[-1]
    assert out.usage.completion_tokens == 16
    assert out.itl_s is not None
    # per sequence: ~gap; over all 16 tokens it would be 3 gaps / 15, a fifth of one
    assert out.itl_s >= gap / 1.5
