"""The binary tensor data extension: round trips, and malformed tails refused by rule.

Bodies are built here by hand from numpy's own little-endian bytes (``tobytes``), so
the decoder is checked against an encoder it does not share code with; responses are
read back with ``tritonclient``'s own :class:`InferResult`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.http import InferResult

from paved.errors import InvalidInput, LimitExceeded
from serving.protocol.v2 import InferenceRequest, InferenceResponse, InferTensor
from serving.protocol.v2_binary import (
    BinaryOutputs,
    binary_outputs,
    decode_tensor,
    encode_response,
    encode_tensor,
    parse_request,
)

pytestmark = pytest.mark.unit

NUMPY: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def raw_bytes(datatype: str, values: list[Any]) -> bytes:
    """The wire bytes of ``values``, written independently of the module under test."""
    if datatype == "BYTES":
        encoded = [v if isinstance(v, bytes) else v.encode() for v in values]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return np.asarray(values, dtype=NUMPY[datatype]).tobytes()


def binary_input(
    name: str, datatype: str, values: list[Any], **kw: Any
) -> tuple[dict[str, Any], bytes]:
    raw = kw.pop("raw", None)
    raw = raw_bytes(datatype, values) if raw is None else raw
    head = {
        "name": name,
        "shape": kw.pop("shape", [len(values)]),
        "datatype": datatype,
        "parameters": {"binary_data_size": kw.pop("size", len(raw)), **kw.pop("parameters", {})},
        **kw,
    }
    return head, raw


Body = tuple[bytes, int]
"""A request body and its JSON header's length."""


def request_body(
    *tensors: tuple[dict[str, Any], bytes] | dict[str, Any], tail_extra: bytes = b"", **kw: Any
) -> Body:
    heads = [t[0] if isinstance(t, tuple) else t for t in tensors]
    tail = b"".join(t[1] for t in tensors if isinstance(t, tuple))
    header = json.dumps({"inputs": heads, **kw}).encode()
    return header + tail + tail_extra, len(header)


def parse(body_and_length: Body) -> InferenceRequest:
    body, length = body_and_length
    return parse_request(body, str(length).encode())


def refused(body: bytes, header: bytes | None) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_request(body, header)
    return info.value


# ---------------------------------------------------------------- round trips

ROUND_TRIPS: list[tuple[str, list[Any]]] = [
    ("BOOL", [True, False, True]),
    ("UINT8", [0, 255]),
    ("UINT16", [0, 65535]),
    ("UINT32", [0, 2**32 - 1]),
    ("UINT64", [0, 2**64 - 1]),
    ("INT8", [-128, 127]),
    ("INT16", [-(2**15), 2**15 - 1]),
    ("INT32", [-(2**31), 2**31 - 1]),
    ("INT64", [-(2**63), 2**63 - 1]),
    ("FP16", [65504.0, -0.5, 0.0]),
    ("FP32", [1.5, -2.0, 3.4028234663852886e38]),
    ("FP64", [1.7976931348623157e308, -1e-300]),
    ("BYTES", ["", "own", "héllo wörld", "a" * 300]),
    ("FP32", []),
    ("BYTES", []),
]


@pytest.mark.parametrize(("datatype", "values"), ROUND_TRIPS)
def test_each_datatype_round_trips_with_numpys_bytes(datatype: str, values: list[Any]) -> None:
    raw = raw_bytes(datatype, values)
    assert encode_tensor(datatype, values) == raw
    assert decode_tensor("x", datatype, [len(values)], raw) == values


def test_a_tritonclient_style_request_decodes_in_input_order() -> None:
    req = parse(
        request_body(
            binary_input("age", "FP32", [30.0, 41.5]),
            {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, 2]},  # JSON in between
            binary_input("home", "BYTES", ["own", "rent"]),
            binary_input("flag", "BOOL", [True, False], parameters={"tag": "t"}),
            binary_input("grid", "INT32", [1, 2, 3, 4, 5, 6], shape=[2, 3]),
            id="r1",
            outputs=[{"name": "p", "parameters": {"binary_data": True}}],
        )
    )
    assert req.id == "r1"
    assert [(t.name, t.data) for t in req.inputs] == [
        ("age", [30.0, 41.5]),
        ("n", [1, 2]),
        ("home", ["own", "rent"]),
        ("flag", [True, False]),
        ("grid", [1, 2, 3, 4, 5, 6]),
    ]
    # binary_data_size is spent once decoded; other parameters stay
    assert [t.parameters for t in req.inputs] == [None, None, None, {"tag": "t"}, None]


def test_the_header_with_no_binary_inputs_is_a_plain_json_request() -> None:
    body, length = request_body({"name": "a", "shape": [1], "datatype": "FP32", "data": [1]})
    assert parse_request(body, str(length).encode()).inputs[0].data == [1]


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=20))
def test_fp32_values_survive_a_round_trip(values: list[float]) -> None:
    raw = encode_tensor("FP32", values)
    assert decode_tensor("x", "FP32", [len(values)], raw) == values


@given(st.lists(st.text(max_size=8), max_size=8))
def test_text_survives_a_bytes_round_trip(values: list[str]) -> None:
    raw = encode_tensor("BYTES", values)
    assert decode_tensor("x", "BYTES", [len(values)], raw) == values


# ---------------------------------------------------------------- refused

FP3 = [1.0, 2.0, 3.0]
FP3_RAW = raw_bytes("FP32", FP3)
ONE_BYTES = raw_bytes("BYTES", ["ab"])


def fp(name: str, values: list[float], **kw: Any) -> tuple[dict[str, Any], bytes]:
    return binary_input(name, "FP32", values, **kw)


def text(values: list[Any], **kw: Any) -> tuple[dict[str, Any], bytes]:
    return binary_input("s", "BYTES", values, **kw)


# case: (body, rule, part of the message)
BAD_TAILS: dict[str, tuple[Body, str, str]] = {
    "short tail": (
        request_body(fp("a", FP3, raw=FP3_RAW[:-1], size=12)),
        "binary_data_size",
        "add up to 12 bytes but 11 bytes follow",
    ),
    "extra bytes": (
        request_body(fp("a", FP3), tail_extra=b"\0"),
        "binary_data_size",
        "add up to 12 bytes but 13 bytes follow",
    ),
    "size disagrees with shape": (
        request_body(fp("a", FP3, shape=[2])),
        "binary_data_size",
        "shape [2] of FP32 takes 8 bytes but binary_data_size is 12",
    ),
    "sizes swapped between inputs": (
        request_body(fp("a", [1.0], size=8), fp("b", FP3, size=8)),
        "binary_data_size",
        "input 'a': shape [1] of FP32 takes 4 bytes",
    ),
    "negative size": (request_body(fp("a", [], size=-4)), "binary_data_size", "non-negative"),
    "size as text": (request_body(fp("a", [], size="0")), "binary_data_size", "not '0'"),
    "size as bool": (request_body(fp("a", [], size=False)), "binary_data_size", "not False"),
    "data and size": (request_body(fp("a", FP3, data=FP3)), "binary_data_size", "both"),
    "length prefix past the end": (
        request_body(text(["x"], raw=struct.pack("<I", 100) + b"x")),
        "binary_bytes_length",
        "element 0 declares 100 bytes but 1 remain",
    ),
    "length prefix cut short": (
        request_body(text(["ab", "c"], raw=ONE_BYTES + b"\1\0")),
        "binary_bytes_length",
        "element 1 has 2 bytes left",
    ),
    "fewer BYTES than the shape": (
        request_body(text(["a"], shape=[2])),
        "shape_data_mismatch",
        "holds 2 BYTES elements but the binary data holds 1",
    ),
    "more BYTES than the shape": (
        request_body(text(["a", "b"], shape=[1])),
        "shape_data_mismatch",
        "holds 2",
    ),
    "BYTES not UTF-8": (request_body(text([b"\xff\xfe"])), "binary_bytes_utf8", "element 0"),
    "BOOL byte 2": (
        request_body(binary_input("f", "BOOL", [], shape=[2], raw=b"\1\2")),
        "binary_bool_value",
        "0 or 1",
    ),
    "NaN, as in JSON": (request_body(fp("a", [float("nan")])), "data_not_finite", "finite"),
    "unknown datatype": (
        request_body(binary_input("a", "FLOAT", [], raw=b"")),
        "datatype_unknown",
        "'FLOAT'",
    ),
    "negative shape": (
        request_body(fp("a", [], shape=[-1, -1], raw=b"\0" * 4)),
        "shape_negative",
        "[-1, -1]",
    ),
    "shape not a list": (request_body(fp("a", [], shape="3")), "request_schema", "shape"),
    "duplicate names": (
        request_body(fp("a", [1.0]), fp("a", [2.0])),
        "input_duplicate",
        "'a' appears twice",
    ),
}


@pytest.mark.parametrize("case", BAD_TAILS)
def test_malformed_binary_requests_are_refused_by_rule(case: str) -> None:
    (body, length), rule, says = BAD_TAILS[case]
    err = refused(body, str(length).encode())
    assert (err.rule, err.status) == (rule, 400), err.message
    assert says in err.message


@pytest.mark.parametrize(
    ("header", "rule"),
    [
        (b"-1", "binary_header_length"),
        (b"12a", "binary_header_length"),
        (b"", "binary_header_length"),
        (b"9" * 5000, "binary_header_length"),
        (b"999", "binary_header_length"),  # longer than the body
        (b"3", "malformed_json"),  # the JSON header cut short
    ],
)
def test_a_bad_header_length_is_refused(header: bytes, rule: str) -> None:
    body, _ = request_body(binary_input("a", "FP32", FP3))
    assert refused(body, header).rule == rule


def test_a_size_without_the_http_header_is_refused() -> None:
    doc = {
        "inputs": [
            {
                "name": "a",
                "shape": [1],
                "datatype": "FP32",
                "data": [1.0],
                "parameters": {"binary_data_size": 4},
            }
        ]
    }
    assert refused(json.dumps(doc).encode(), None).rule == "binary_data_size"


# ---------------------------------------------------------------- responses


def request(
    parameters: dict[str, Any] | None = None, outputs: list[dict[str, Any]] | None = None
) -> InferenceRequest:
    x = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    return InferenceRequest.model_validate(
        {"inputs": [x], "parameters": parameters, "outputs": outputs}
    )


@pytest.mark.parametrize(
    ("parameters", "outputs", "binary"),
    [
        (None, None, set()),
        ({"binary_data_output": True}, None, {"p", "s"}),
        (None, [{"name": "p", "parameters": {"binary_data": True}}, {"name": "s"}], {"p"}),
        (
            {"binary_data_output": True},
            [{"name": "p", "parameters": {"binary_data": False}}, {"name": "s"}],
            {"s"},
        ),
    ],
)
def test_binary_outputs_follow_the_output_then_the_request(
    parameters: dict[str, Any] | None, outputs: list[dict[str, Any]] | None, binary: set[str]
) -> None:
    chosen = binary_outputs(request(parameters, outputs))
    assert {n for n in ("p", "s") if n in chosen} == binary


@pytest.mark.parametrize(
    ("parameters", "outputs"),
    [
        ({"binary_data_output": 1}, None),
        (None, [{"name": "p", "parameters": {"binary_data": "true"}}]),
    ],
)
def test_a_flag_that_is_not_a_boolean_is_refused(
    parameters: dict[str, Any] | None, outputs: list[dict[str, Any]] | None
) -> None:
    with pytest.raises(InvalidInput) as info:
        binary_outputs(request(parameters, outputs))
    assert info.value.rule == "binary_data_flag"


RESPONSE = InferenceResponse(
    model_name="m",
    id="r1",
    outputs=[
        InferTensor(name="p", shape=[3], datatype="FP32", data=[0.25, 0.5, 1e-3]),
        InferTensor(name="s", shape=[2], datatype="BYTES", data=["low", "hïgh"]),
        InferTensor(name="f", shape=[2], datatype="BOOL", data=[True, False]),
    ],
)


def test_without_binary_outputs_the_response_is_plain_json() -> None:
    body, length = encode_response(RESPONSE, BinaryOutputs())
    assert length is None
    assert body == RESPONSE.model_dump_json(exclude_none=True).encode()


def test_tritonclient_reads_a_mixed_binary_response() -> None:
    body, length = encode_response(RESPONSE, BinaryOutputs(default=True, named={"f": False}))
    assert length is not None
    header = json.loads(body[:length])
    assert [o.get("parameters") for o in header["outputs"]] == [
        {"binary_data_size": 12},
        {"binary_data_size": 4 + 3 + 4 + 5},
        None,
    ]
    assert ["data" in o for o in header["outputs"]] == [False, False, True]
    result = InferResult.from_response_body(body, header_length=length)
    np.testing.assert_array_equal(
        result.as_numpy("p"), np.asarray([0.25, 0.5, 1e-3], dtype=np.float32)
    )
    assert result.as_numpy("s").tolist() == [b"low", "hïgh".encode()]
    assert result.as_numpy("f").tolist() == [True, False]
    assert result.get_response()["id"] == "r1"


def test_a_binary_tail_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitExceeded) as info:
        encode_response(RESPONSE, BinaryOutputs(default=True), max_bytes=15)
    assert info.value.rule == "max_response_bytes"
    assert encode_response(RESPONSE, BinaryOutputs(default=True), max_bytes=12 + 16 + 2)[1]
