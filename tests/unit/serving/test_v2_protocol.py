"""Open Inference Protocol v2 models: what is accepted, what is refused and by which rule."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paved.errors import InvalidInput, LimitExceeded
from serving.protocol.v2 import (
    DATATYPES,
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    InferTensor,
    parse_infer_request,
)

pytestmark = pytest.mark.unit


def tensor(
    data: Any, shape: list[int] | None = None, datatype: str = "FP32", **kw: Any
) -> dict[str, Any]:
    return {
        "name": kw.pop("name", "x"),
        "shape": [len(data)] if shape is None else shape,
        "datatype": datatype,
        "data": data,
        **kw,
    }


def body(*tensors: dict[str, Any], **kw: Any) -> bytes:
    return json.dumps({"inputs": list(tensors), **kw}).encode()


def refused(raw: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_infer_request(raw)
    return info.value


# ---------------------------------------------------------------- accepted


def test_a_flat_request_parses_into_typed_tensors() -> None:
    req = parse_infer_request(
        body(
            tensor([1.5, 2], name="age"),
            tensor(["own", "rent"], datatype="BYTES", name="home"),
            tensor([True, False], datatype="BOOL", name="flag", parameters={"binary_data": False}),
            id="req-1",
            parameters={"priority": 1, "tag": "a", "ratio": 0.5, "on": True},
            outputs=[{"name": "default_probability"}],
        )
    )
    assert req.id == "req-1"
    assert [t.name for t in req.inputs] == ["age", "home", "flag"]
    assert req.inputs[0].data == [1.5, 2]
    assert req.inputs[1].data == ["own", "rent"]
    assert req.inputs[2].parameters == {"binary_data": False}
    assert req.parameters == {"priority": 1, "tag": "a", "ratio": 0.5, "on": True}
    assert req.outputs is not None
    assert req.outputs[0].name == "default_probability"


@pytest.mark.parametrize(
    ("data", "shape", "flat"),
    [
        ([[1, 2, 3], [4, 5, 6]], [2, 3], [1, 2, 3, 4, 5, 6]),
        ([[[1], [2]], [[3], [4]]], [2, 2, 1], [1, 2, 3, 4]),
        ([[1, 2], [3, 4]], [4], [1, 2, 3, 4]),  # nesting need not mirror the shape
        ([], [0], []),
        ([[], []], [2, 0], []),
        ([7], [], [7]),  # a scalar: the empty product is 1
    ],
)
def test_nested_data_is_flattened_row_major(
    data: list[Any], shape: list[int], flat: list[Any]
) -> None:
    t = InferTensor.model_validate(tensor(data, shape, "INT32"))
    assert t.data == flat


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", [1, 2.5, -3]),  # JSON has one number type: integral floats may be ints
        ("FP16", [65504.0, -65504]),
        ("FP64", [1.7976931348623157e308]),
        ("UINT8", [0, 255]),
        ("UINT64", [0, 2**64 - 1]),
        ("INT8", [-128, 127]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("BOOL", [True, False]),
        ("BYTES", ["", "é", "a b"]),
    ],
)
def test_values_at_the_edges_of_each_datatype_are_accepted(datatype: str, data: list[Any]) -> None:
    req = parse_infer_request(body(tensor(data, datatype=datatype)))
    assert req.inputs[0].data == data


# ---------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("t", "rule"),
    [
        (tensor([1], datatype="FLOAT32"), "datatype_unknown"),
        (tensor([1], datatype="fp32"), "datatype_unknown"),
        (tensor([], shape=[-1]), "shape_negative"),
        (tensor([1, 2], shape=[2, -1]), "shape_negative"),
        (tensor([1, 2], shape=[3]), "shape_data_mismatch"),
        (tensor([1, 2, 3], shape=[2]), "shape_data_mismatch"),
        (tensor([[1, 2], [3, 4]], shape=[2]), "shape_data_mismatch"),
        (tensor([1, 2], shape=[]), "shape_data_mismatch"),
        (tensor([[1, 2], [3]], shape=[3]), "data_ragged"),
        (tensor([[1, 2], 3, 4], shape=[4]), "data_ragged"),
        (tensor([True, 1], datatype="BOOL"), "data_type"),
        (tensor(["true"], datatype="BOOL"), "data_type"),
        (tensor([1, True], datatype="INT32"), "data_type"),
        (tensor([1.0], datatype="INT32"), "data_type"),
        (tensor(["1"], datatype="INT64"), "data_type"),
        (tensor([1.0, "2"], datatype="FP32"), "data_type"),
        (tensor([False], datatype="FP32"), "data_type"),
        (tensor([None], datatype="FP64"), "data_type"),
        (tensor([{"v": 1}], datatype="FP32"), "data_type"),
        (tensor([1], datatype="BYTES"), "data_type"),
        (tensor([256], datatype="UINT8"), "data_range"),
        (tensor([-1], datatype="UINT64"), "data_range"),
        (tensor([2**64], datatype="UINT64"), "data_range"),
        (tensor([-129], datatype="INT8"), "data_range"),
        (tensor([2**63], datatype="INT64"), "data_range"),
        (tensor([65520.0], datatype="FP16"), "data_range"),
        (tensor([1e39], datatype="FP32"), "data_range"),
        (tensor([10**400], datatype="FP64"), "data_range"),
        (tensor([math.nan], datatype="FP32"), "data_not_finite"),
        (tensor([1.0, math.inf], datatype="FP64"), "data_not_finite"),
        (tensor([-math.inf], datatype="FP16"), "data_not_finite"),
    ],
)
def test_each_tensor_rule_refuses_naming_the_rule_and_the_input(
    t: dict[str, Any], rule: str
) -> None:
    t["name"] = "loan_amount"
    err = refused(body(tensor([1.0], name="age"), t))  # json.dumps writes NaN/Infinity
    assert err.rule == rule
    assert err.details == {"input": "loan_amount"}
    assert "'loan_amount'" in err.message
    assert err.status == 400


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"{", "malformed_json"),
        (b"", "malformed_json"),
        (b'{"inputs": [}', "malformed_json"),
        (b"[]", "request_schema"),
        (b"{}", "request_schema"),
        (b'{"inputs": []}', "request_schema"),
        (body(tensor([1]), extra=1), "request_schema"),
        (body({"name": "x", "shape": [1], "datatype": "FP32"}), "request_schema"),
        (body({"name": "x", "shape": ["1"], "datatype": "FP32", "data": [1]}), "request_schema"),
        (body({"name": "x", "shape": [True], "datatype": "FP32", "data": [1]}), "request_schema"),
        (body({"name": "x", "shape": [1], "datatype": "FP32", "data": 1}), "request_schema"),
        (body({"name": "", "shape": [1], "datatype": "FP32", "data": [1]}), "request_schema"),
        (body(tensor([1], parameters={"p": [1]})), "request_schema"),
        (body(tensor([1]), id=7), "request_schema"),
        (body(tensor([1]), tensor([2])), "input_duplicate"),
        (body(tensor([1]), outputs=[{"name": "y"}, {"name": "y"}]), "input_duplicate"),
    ],
)
def test_request_level_refusals(raw: bytes, rule: str) -> None:
    assert refused(raw).rule == rule


def test_schema_errors_say_where() -> None:
    err = refused(body({"name": "x", "shape": [1], "datatype": "FP32"}))
    assert "inputs.0.data" in err.message


def test_the_v2_error_body_names_the_rule() -> None:
    err = LimitExceeded("65 rows in one request", rule="max_batch_rows")
    assert ErrorResponse.from_error(err).model_dump() == {
        "error": "65 rows in one request (rule: max_batch_rows)"
    }


def test_a_response_serialises_as_the_spec_shows() -> None:
    out = InferTensor(name="p", shape=[2], datatype="FP32", data=[0.25, 0.5])
    resp = InferenceResponse(model_name="credit", model_version="3", id="r", outputs=[out])
    assert json.loads(resp.model_dump_json(exclude_none=True)) == {
        "model_name": "credit",
        "model_version": "3",
        "id": "r",
        "outputs": [{"name": "p", "shape": [2], "datatype": "FP32", "data": [0.25, 0.5]}],
    }


# ---------------------------------------------------------------- properties

SHAPES = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=4)
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=5),
    "INT8": st.integers(-128, 127),
    "UINT32": st.integers(0, 2**32 - 1),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "FP32": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-(10**6), 10**6)
    ),
    "FP64": st.floats(allow_nan=False, allow_infinity=False),
}


def nest(flat: list[Any], shape: list[int]) -> Any:
    """The row-major nested form of ``flat`` for ``shape`` (what a client may send)."""
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def consistent(draw: st.DrawFn) -> tuple[str, list[int], list[Any]]:
    datatype = draw(st.sampled_from(sorted(ELEMENTS)))
    shape = draw(SHAPES)
    flat = draw(st.lists(ELEMENTS[datatype], min_size=math.prod(shape), max_size=math.prod(shape)))
    return datatype, shape, flat


@st.composite
def mismatched(draw: st.DrawFn) -> tuple[str, list[int], list[Any]]:
    datatype = draw(st.sampled_from(sorted(ELEMENTS)))
    shape = draw(SHAPES)
    expected = math.prod(shape)
    n = draw(st.integers(0, expected + 3).filter(lambda k: k != expected))
    return datatype, shape, draw(st.lists(ELEMENTS[datatype], min_size=n, max_size=n))


@given(consistent(), st.booleans())
def test_consistent_tensors_round_trip_flat_or_nested(
    case: tuple[str, list[int], list[Any]], nested: bool
) -> None:
    datatype, shape, flat = case
    data = nest(flat, shape) if nested and shape else flat
    req = parse_infer_request(body(tensor(data, shape, datatype)))
    assert req.inputs[0].data == flat
    assert req.inputs[0].shape == shape


@given(mismatched())
def test_any_element_count_other_than_the_shape_product_is_refused(
    case: tuple[str, list[int], list[Any]],
) -> None:
    datatype, shape, data = case
    assert refused(body(tensor(data, shape, datatype))).rule == "shape_data_mismatch"


JSON_SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3), st.none()
)
FP_MAX = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": 1.7976931348623157e308}


def fits(datatype: str, value: Any) -> bool:
    """An independent statement of which JSON scalar each datatype takes."""
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype in FP_MAX:
        return (
            type(value) in (int, float) and math.isfinite(value) and abs(value) <= FP_MAX[datatype]
        )
    if type(value) is not int:
        return False
    bits = int(datatype.removeprefix("U").removeprefix("INT"))
    if datatype.startswith("U"):
        return 0 <= value < 1 << bits
    return -(1 << (bits - 1)) <= value < 1 << (bits - 1)


@given(st.sampled_from(sorted(DATATYPES)), st.lists(JSON_SCALARS, min_size=1, max_size=4))
def test_elements_are_accepted_exactly_when_they_fit_the_datatype(
    datatype: str, data: list[Any]
) -> None:
    raw = body(tensor(data, datatype=datatype))
    if all(fits(datatype, v) for v in data):
        assert parse_infer_request(raw).inputs[0].data == data
    else:
        assert refused(raw).rule in {"data_type", "data_range", "data_not_finite"}


def test_datatypes_are_the_v2_set() -> None:
    assert {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    } == DATATYPES
    assert InferenceRequest.model_config.get("extra") == "forbid"
