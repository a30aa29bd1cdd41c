"""Triton's binary tensor data extension end to end: ``tritonclient.http`` as it comes.

``tritonclient`` sends and asks for binary tensors unless told otherwise, so these
tests use it with its defaults (plain ``set_data_from_numpy(arr)`` and
``InferRequestedOutput(name)``) against the replica of ``conftest.py``; the scores must
equal ``model.predict_columns`` exactly. Raw httpx checks the framing and the refusals
byte for byte, with bodies framed here by hand.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bundled.credit_risk.model import OUTPUT_NAME
from tests.integration.serving.conftest import (
    ENDPOINT,
    MAX_ROWS,
    Served,
    expected_scores,
    triton_inputs,
)

pytestmark = pytest.mark.integration


def test_tritonclient_defaults_binary_both_ways_and_scores_equal_the_model(
    client: triton.InferenceServerClient, served: Served
) -> None:
    rows = slice(0, 40)
    inputs = []
    for spec in served.model.input_schema():
        tensor = triton.InferInput(spec.name, [40], spec.datatype)
        tensor.set_data_from_numpy(served.columns[spec.name][rows])  # binary by default
        inputs.append(tensor)
    result = client.infer(
        ENDPOINT, inputs, request_id="bin-1", outputs=[triton.InferRequestedOutput(OUTPUT_NAME)]
    )
    got = result.as_numpy(OUTPUT_NAME)
    assert got.dtype == np.float32
    assert got.shape == (40,)
    np.testing.assert_array_equal(got, expected_scores(served, rows))
    output = result.get_output(OUTPUT_NAME)
    assert output["parameters"] == {"binary_data_size": 4 * 40}
    assert "data" not in output
    assert result.get_response()["id"] == "bin-1"


@pytest.mark.parametrize(
    ("binary_in", "binary_out", "name_the_output"),
    [(True, False, True), (False, True, True), (True, True, False), (False, True, False)],
    ids=["binary in, JSON out", "JSON in, binary out", "binary in, all out", "JSON in, all out"],
)
def test_every_mix_of_encodings_scores_the_same(
    client: triton.InferenceServerClient,
    served: Served,
    binary_in: bool,
    binary_out: bool,
    name_the_output: bool,
) -> None:
    """Naming no output makes the client ask ``binary_data_output``: every output binary."""
    rows = slice(100, 100 + MAX_ROWS)  # a full batch
    outputs = [triton.InferRequestedOutput(OUTPUT_NAME, binary_data=binary_out)]
    result = client.infer(
        ENDPOINT,
        triton_inputs(served, rows, binary=binary_in),
        outputs=outputs if name_the_output else None,
    )
    np.testing.assert_array_equal(result.as_numpy(OUTPUT_NAME), expected_scores(served, rows))
    assert ("data" not in result.get_output(OUTPUT_NAME)) == binary_out


def binary_body(served: Served, n: int) -> tuple[bytes, int]:
    """A binary request for the first ``n`` rows, framed here by hand: (body, header length)."""
    heads, tail = [], b""
    for spec in served.model.input_schema():
        values = served.columns[spec.name][:n]
        if spec.datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        else:
            raw = values.tobytes()
        params = {"binary_data_size": len(raw)}
        heads.append(
            {"name": spec.name, "shape": [n], "datatype": spec.datatype, "parameters": params}
        )
        tail += raw
    header = json.dumps({"inputs": heads, "parameters": {"binary_data_output": True}}).encode()
    return header + tail, len(header)


def test_a_binary_response_carries_its_header_length(http: httpx.Client, served: Served) -> None:
    body, length = binary_body(served, 5)
    r = http.post(
        f"/v2/models/{ENDPOINT}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(length)},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    split = int(r.headers["inference-header-content-length"])
    header, tail = json.loads(r.content[:split]), r.content[split:]
    assert header["outputs"] == [
        {
            "name": OUTPUT_NAME,
            "shape": [5],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 20},
        }
    ]
    np.testing.assert_array_equal(np.frombuffer(tail, "<f4"), expected_scores(served, slice(0, 5)))


def _cut_tail(body: bytes, length: int) -> tuple[bytes, bytes]:
    return body[:-1], str(length).encode()


def _bad_prefix(body: bytes, length: int) -> tuple[bytes, bytes]:
    """Make the first BYTES input's first element claim more bytes than the body holds."""
    at = length
    for tensor in json.loads(body[:length])["inputs"]:
        if tensor["datatype"] == "BYTES":
            break
        at += tensor["parameters"]["binary_data_size"]
    return body[:at] + struct.pack("<I", 1 << 20) + body[at + 4 :], str(length).encode()


@pytest.mark.parametrize(
    ("tamper", "status", "rule"),
    [
        (_cut_tail, 400, "binary_data_size"),
        (_bad_prefix, 400, "binary_bytes_length"),
        (lambda body, length: (body, b"x1"), 400, "binary_header_length"),
        (lambda body, length: (body, str(len(body) + 1).encode()), 400, "binary_header_length"),
    ],
    ids=["short tail", "BYTES length past its tensor", "header not a number", "header past body"],
)
def test_malformed_binary_requests_are_refused_naming_the_rule(
    http: httpx.Client, served: Served, tamper: Any, status: int, rule: str
) -> None:
    body, header = tamper(*binary_body(served, 8))
    r = http.post(
        f"/v2/models/{ENDPOINT}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": header.decode()},
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in r.headers
    assert r.json()["error"].endswith(f"(rule: {rule})")


def test_binary_batches_are_held_to_max_batch_rows(
    client: triton.InferenceServerClient, served: Served
) -> None:
    with pytest.raises(InferenceServerException, match="max_batch_rows") as info:
        client.infer(ENDPOINT, triton_inputs(served, slice(0, MAX_ROWS + 1), binary=True))
    assert info.value.status() == "400"
