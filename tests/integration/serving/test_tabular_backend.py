"""The tabular backend over real HTTP, checked by a client nobody here wrote.

A small credit-risk model is trained, loaded by :class:`TabularBackend` and served by
uvicorn on 127.0.0.1 (the ``served`` fixture in ``conftest.py``); Triton's
``tritonclient.http`` speaks the Open Inference Protocol v2 to it in JSON, and the
scores must equal ``model.predict_columns`` on the same arrays (the binary extension
is tested in ``test_v2_binary.py``). Refusals are checked over raw httpx so the exact
status, body and headers are seen.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from bundled.credit_risk.model import OUTPUT_NAME
from serving.backends.tabular import TabularBackend
from tests.integration.serving.conftest import (
    ENDPOINT,
    MAX_CONCURRENCY,
    MAX_ROWS,
    VERSION,
    Served,
    triton_inputs,
)

pytestmark = pytest.mark.integration


def v2_body(served: Served, n: int, **changes: dict[str, Any]) -> dict[str, Any]:
    """A valid JSON request for the first ``n`` rows; ``changes`` patch inputs by name."""
    inputs = []
    for spec in served.model.input_schema():
        data = served.columns[spec.name][:n].tolist()
        tensor = {"name": spec.name, "shape": [n], "datatype": spec.datatype, "data": data}
        inputs.append({**tensor, **changes.get(spec.name, {})})
    return {"inputs": inputs}


# ---------------------------------------------------------------- with tritonclient


def test_health_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(ENDPOINT)
    assert client.is_model_ready(ENDPOINT, str(VERSION))
    assert not client.is_model_ready("other-endpoint")
    assert not client.is_model_ready(ENDPOINT, "2")


def test_metadata_describes_the_model(client: triton.InferenceServerClient, served: Served) -> None:
    meta = client.get_model_metadata(ENDPOINT)
    assert meta["name"] == ENDPOINT
    assert meta["versions"] == [str(VERSION)]
    assert meta["platform"] == "pytorch"
    assert meta["inputs"] == [s.model_dump() for s in served.model.input_schema()]
    assert meta["outputs"] == [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}]
    assert {t["datatype"] for t in meta["inputs"]} == {"FP32", "BYTES", "BOOL"}
    assert client.get_model_metadata(ENDPOINT, str(VERSION)) == meta
    server = client.get_server_metadata()
    assert server["name"] == "pavedpath"
    assert server["extensions"] == ["binary_tensor_data"]


def test_scores_equal_the_model_on_the_same_data(
    client: triton.InferenceServerClient, served: Served
) -> None:
    rows = slice(0, 50)
    result = client.infer(
        ENDPOINT,
        triton_inputs(served, rows),
        model_version=str(VERSION),
        request_id="req-1",
        outputs=[triton.InferRequestedOutput(OUTPUT_NAME, binary_data=False)],
    )
    got = result.as_numpy(OUTPUT_NAME)
    expected = served.model.predict_columns({k: v[rows] for k, v in served.columns.items()})
    assert got.dtype == np.float32
    assert got.shape == (50,)
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float32))
    assert 0.0 < got.min() <= got.max() < 1.0
    response = result.get_response()
    assert response["model_name"] == ENDPOINT
    assert response["model_version"] == str(VERSION)
    assert response["id"] == "req-1"


def test_all_outputs_come_back_when_none_is_requested(
    client: triton.InferenceServerClient, served: Served
) -> None:
    result = client.infer(ENDPOINT, triton_inputs(served, slice(10, 11)))
    expected = served.model.predict_columns({k: v[10:11] for k, v in served.columns.items()})
    np.testing.assert_array_equal(
        result.as_numpy(OUTPUT_NAME), np.asarray(expected, dtype=np.float32)
    )


# ---------------------------------------------------------------- refusals over raw HTTP


def _drop_first(body: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": body["inputs"][1:]}


REFUSALS: list[tuple[str, Any, int, str]] = [
    ("missing feature", _drop_first, 400, "feature_missing"),
    (
        "wrong datatype",
        {"age": {"datatype": "BYTES", "data": ["a", "b"]}},
        400,
        "datatype_mismatch",
    ),
    ("element of wrong type", {"age": {"data": [30.0, "31"]}}, 400, "data_type"),
    ("shape/data mismatch", {"age": {"shape": [3]}}, 400, "shape_data_mismatch"),
    ("negative shape", {"age": {"shape": [-2]}}, 400, "shape_negative"),
    ("not a 1-D batch", {"age": {"shape": [2, 1]}}, 400, "input_shape"),
    ("unknown datatype", {"age": {"datatype": "FLOAT"}}, 400, "datatype_unknown"),
    ("unknown feature", {"age": {"name": "agee"}}, 400, "feature_unknown"),
    ("unknown output", lambda b: {**b, "outputs": [{"name": "score"}]}, 400, "output_unknown"),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "rule"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_bad_requests_are_refused_naming_the_rule(
    http: httpx.Client, served: Served, case: str, change: Any, status: int, rule: str
) -> None:
    body = change(v2_body(served, 2)) if callable(change) else v2_body(served, 2, **change)
    r = http.post(f"/v2/models/{ENDPOINT}/infer", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert f"(rule: {rule})" in r.json()["error"]


def test_too_many_rows_is_a_limit(http: httpx.Client, served: Served) -> None:
    r = http.post(f"/v2/models/{ENDPOINT}/infer", json=v2_body(served, MAX_ROWS + 1))
    assert r.status_code == 400
    assert r.json()["error"].endswith("(rule: max_batch_rows)")
    assert str(MAX_ROWS) in r.json()["error"]
    assert http.post(f"/v2/models/{ENDPOINT}/infer", json=v2_body(served, MAX_ROWS)).is_success


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "rule"),
    [
        ("POST", f"/v2/models/{ENDPOINT}/infer", b'{"inputs": [', 400, "malformed_json"),
        ("POST", f"/v2/models/{ENDPOINT}/infer", b"\xff\xfe", 400, "malformed_json"),
        ("POST", "/v2/models/fraud/infer", b"{}", 404, "model_unknown"),
        ("POST", f"/v2/models/{ENDPOINT}/versions/9/infer", b"{}", 404, "model_version_unknown"),
        ("GET", "/v2/models/fraud", b"", 404, "model_unknown"),
        ("GET", "/v2/nothing", b"", 404, "route_unknown"),
        ("GET", f"/v2/models/{ENDPOINT}/infer", b"", 405, "http_method"),
    ],
)
def test_protocol_errors_are_v2_error_bodies(
    http: httpx.Client, method: str, path: str, content: bytes, status: int, rule: str
) -> None:
    r = http.request(method, path, content=content)
    assert r.status_code == status
    assert list(r.json()) == ["error"]
    assert r.json()["error"].endswith(f"(rule: {rule})")


def test_past_max_concurrency_requests_get_503_at_once(http: httpx.Client, served: Served) -> None:
    """Two slow uploads hold both slots; a third request is refused without waiting."""
    payload = json.dumps(v2_body(served, 3)).encode()
    host, port = served.url.split(":")
    holders = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
    try:
        for conn in holders:
            conn.sendall(
                f"POST /v2/models/{ENDPOINT}/infer HTTP/1.1\r\nhost: {host}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
                + payload[:10]
            )
        deadline = time.monotonic() + 10
        while served.backend.in_flight < MAX_CONCURRENCY:
            assert time.monotonic() < deadline, "the slow uploads were never admitted"
            time.sleep(0.01)

        # Refused, not queued: the holders finish only after this answer arrives.
        r = http.post(f"/v2/models/{ENDPOINT}/infer", content=payload)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"].endswith("(rule: max_concurrency)")
        assert http.get("/v2/health/ready").status_code == 200  # probes are never refused

        for conn in holders:
            conn.sendall(payload[10:])
            answer = conn.recv(65536).decode()
            assert answer.startswith("HTTP/1.1 200"), answer
    finally:
        for conn in holders:
            conn.close()
    assert http.post(f"/v2/models/{ENDPOINT}/infer", content=payload).status_code == 200


async def test_a_backend_that_has_not_started_is_not_ready(served: Served) -> None:
    backend = TabularBackend(served.backend.config)
    transport = httpx.ASGITransport(app=backend.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as c:
        assert (await c.get("/v2/health/live")).status_code == 200
        assert (await c.get("/v2/health/ready")).json() == {"ready": False}
        ready = await c.get(f"/v2/models/{ENDPOINT}/ready")
        assert ready.status_code == 503
        r = await c.post(f"/v2/models/{ENDPOINT}/infer", json=v2_body(served, 1))
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"].endswith("(rule: not_ready)")
        await backend.start()
        assert (await c.get("/v2/health/ready")).json() == {"ready": True}
        await backend.stop()
        assert (await c.get(f"/v2/models/{ENDPOINT}/ready")).status_code == 503
