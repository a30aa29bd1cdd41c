"""KServe Open Inference Protocol v2 (REST): the request, response and metadata bodies.

The models validate at the boundary so a backend only ever sees well-formed tensors:
every input has a v2 datatype, a non-negative shape whose element count equals the
number of data elements, and elements of the type the datatype promises. ``data``
may be nested as the spec allows; it is flattened row-major during validation, so
``InferTensor.data`` is always flat. Data stays plain Python lists here; backends
convert to their own arrays.

Every refusal is an :class:`~paved.errors.InvalidInput` whose ``rule`` says which check
failed and whose ``details["input"]`` names the tensor (raised from inside the
validators; pydantic passes non-``ValueError`` exceptions through untouched)::

    malformed_json       the body is not JSON
    request_schema       a field is missing, of the wrong JSON type, or unknown
    datatype_unknown     datatype is not one of the v2 datatypes
    shape_negative       a shape entry is below zero
    data_ragged          nested data is not a regular (rectangular) array
    shape_data_mismatch  product(shape) differs from the number of data elements
    data_type            an element's JSON type does not fit the datatype
    data_not_finite      NaN or ±Infinity in floating-point data
    data_range           a number outside the datatype's range
    input_duplicate      two inputs (or two requested outputs) share a name
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Final, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paved.errors import InvalidInput, PavedError

INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
FLOAT_MAX: Final[dict[str, float]] = {
    "FP16": 65504.0,
    "FP32": 3.4028234663852886e38,
    "FP64": 1.7976931348623157e308,
}
DATATYPES: Final = frozenset({"BOOL", "BYTES", *INT_RANGES, *FLOAT_MAX})

# JSON element types each datatype accepts. type() (not isinstance) keeps bools out of ints;
# JSON has one number type, so a float tensor may hold integral values written as ints.
_ELEMENT_TYPES: Final[dict[str, frozenset[type]]] = {
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
    **{d: frozenset({int}) for d in INT_RANGES},
    **{d: frozenset({int, float}) for d in FLOAT_MAX},
}
_EXPECTED: Final = {"BOOL": "true or false", "BYTES": "a string"} | {
    **{d: "an integer" for d in INT_RANGES},
    **{d: "a number" for d in FLOAT_MAX},
}

Parameters = dict[str, bool | int | float | str]
"""v2 parameters: a flat object whose values are booleans, numbers or strings."""


def _refuse(tensor: str, message: str, rule: str) -> NoReturn:
    raise InvalidInput(f"input {tensor!r}: {message}", rule=rule, details={"input": tensor})


def flatten(tensor: str, data: list[Any]) -> tuple[list[Any], set[type]]:
    """Flatten nested ``data`` row-major, refusing ragged nesting (as numpy would).

    Returns the elements and the set of their types, which :func:`check_elements`
    reuses so the data is not walked twice.
    """
    level = data
    while True:
        kinds = set(map(type, level))
        if list not in kinds:
            return level, kinds
        if kinds != {list} or len({len(sub) for sub in level}) != 1:
            _refuse(
                tensor, "nested data must be a regular array (equal-length lists)", "data_ragged"
            )
        level = list(itertools.chain.from_iterable(level))


def check_elements(tensor: str, datatype: str, flat: list[Any], kinds: set[type]) -> None:
    """Refuse elements whose JSON type (``kinds``) or value does not fit ``datatype``."""
    allowed = _ELEMENT_TYPES[datatype]
    if not kinds <= allowed:
        i, bad = next((i, v) for i, v in enumerate(flat) if type(v) not in allowed)
        _refuse(
            tensor,
            f"{datatype} element {i} must be {_EXPECTED[datatype]}, got {type(bad).__name__}",
            "data_type",
        )
    if not flat:
        return
    if datatype in INT_RANGES:
        lo, hi = INT_RANGES[datatype]
        if min(flat) < lo or max(flat) > hi:
            _refuse(tensor, f"{datatype} elements must lie in [{lo}, {hi}]", "data_range")
    elif datatype in FLOAT_MAX:
        _check_floats(tensor, datatype, flat)


def _check_floats(tensor: str, datatype: str, flat: list[Any]) -> None:
    limit = FLOAT_MAX[datatype]
    try:
        finite = all(map(math.isfinite, flat))
        largest = max(map(abs, flat))
    except OverflowError:  # an integer literal beyond float64
        finite, largest = True, math.inf
    if not finite:
        _refuse(tensor, f"{datatype} elements must be finite (no NaN, Infinity)", "data_not_finite")
    if largest > limit:
        _refuse(tensor, f"{datatype} elements must lie within ±{limit:g}", "data_range")


class InferTensor(BaseModel):
    """One tensor of a request's ``inputs`` or a response's ``outputs``; ``data`` is flat."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, description="Tensor name, e.g. a model input.")
    shape: list[int] = Field(description="Dimensions; their product is the element count.")
    datatype: str = Field(
        description="A v2 datatype: BOOL, UINT8..64, INT8..64, FP16/32/64, BYTES."
    )
    parameters: Parameters | None = None
    data: list[Any] = Field(description="Elements, flat or nested row-major; flat once parsed.")

    @model_validator(mode="after")
    def _consistent(self) -> InferTensor:
        if self.datatype not in DATATYPES:
            _refuse(
                self.name,
                f"datatype {self.datatype!r} is not a v2 datatype ({', '.join(sorted(DATATYPES))})",
                "datatype_unknown",
            )
        if any(d < 0 for d in self.shape):
            _refuse(self.name, f"shape {self.shape} has a negative dimension", "shape_negative")
        flat, kinds = flatten(self.name, self.data)
        expected = math.prod(self.shape)
        if len(flat) != expected:
            _refuse(
                self.name,
                f"shape {self.shape} holds {expected} elements but data has {len(flat)}",
                "shape_data_mismatch",
            )
        check_elements(self.name, self.datatype, flat, kinds)
        self.data = flat
        return self


class RequestedOutput(BaseModel):
    """An output the client asks for by name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    parameters: Parameters | None = None


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(
                f"{what} {name!r} appears twice", rule="input_duplicate", details={"input": name}
            )
        seen.add(name)


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: ``outputs`` absent or empty means every output."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> InferenceRequest:
        _unique([t.name for t in self.inputs], "input")
        _unique([o.name for o in self.outputs or ()], "requested output")
        return self


class InferenceResponse(BaseModel):
    """The answer to an inference request: one tensor per returned output."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[InferTensor]


class MetadataTensor(BaseModel):
    """A tensor a model takes or returns; ``-1`` in ``shape`` is a variable dimension."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    """``GET /v2/models/{name}``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadataResponse(BaseModel):
    """``GET /v2``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class ServerLiveResponse(BaseModel):
    live: bool


class ServerReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ErrorResponse(BaseModel):
    """The v2 error body. The message ends with the rule that refused the request."""

    error: str

    @classmethod
    def from_error(cls, err: PavedError) -> ErrorResponse:
        suffix = f" (rule: {err.rule})" if err.rule else ""
        return cls(error=f"{err.message}{suffix}")


def parse_infer_request(body: bytes) -> InferenceRequest:
    """Parse and validate a request body, turning pydantic's errors into InvalidInput."""
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise request_error(exc) from None


def request_error(exc: ValidationError) -> InvalidInput:
    """pydantic's errors as one InvalidInput (``malformed_json`` or ``request_schema``).

    Shared with the binary extension, which validates an already-parsed header.
    """
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return InvalidInput(
            f"request body is not valid JSON: {errors[0]['msg']}", rule="malformed_json"
        )
    where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    return InvalidInput(f"invalid inference request: {where}", rule="request_schema")
