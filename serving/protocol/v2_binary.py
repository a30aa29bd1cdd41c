"""Triton's binary tensor data extension to the Open Inference Protocol v2 (REST).

``tritonclient.http`` uses it by default. A body is a JSON header followed by a
binary tail; the ``Inference-Header-Content-Length`` HTTP header gives the JSON
header's length in bytes. Each input sent as binary carries
``parameters.binary_data_size`` and no ``data``; the tail holds those inputs' bytes
back to back, in input order. Elements are row-major and little-endian with no
padding: numbers in their native width, BOOL one byte (0 or 1), BYTES a 4-byte
unsigned length followed by that many bytes. Responses mirror it: an output is sent
as binary when the request asks (``binary_data`` on the requested output, else the
request's ``binary_data_output``), with ``binary_data_size`` in place of ``data`` and
the same HTTP header on the response.

Decoded tensors are handed to :mod:`serving.protocol.v2` as ordinary ``data`` lists,
so a binary request passes the very checks a JSON one does (finite floats, integer
ranges, BYTES as UTF-8 strings because the backends take text). Refusals, on top of
that module's (all :class:`~paved.errors.InvalidInput`, 400)::

    binary_header_length  the header is not a decimal byte count within the body
    binary_data_size      a size that is not a non-negative integer; sizes that do not
                          add up to the tail; a size that disagrees with shape and
                          datatype; an input with both ``data`` and a size; a size in
                          a request without the header
    binary_bytes_length   a BYTES length prefix cut short or running past its tensor
    binary_bytes_utf8     a BYTES element that is not UTF-8
    binary_bool_value     a BOOL byte other than 0 or 1
    binary_data_flag      ``binary_data`` / ``binary_data_output`` is not a boolean
    max_response_bytes    the binary tail of a response over its limit (LimitExceeded)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json, to_json

from paved.errors import InvalidInput, LimitExceeded
from serving.protocol.v2 import (
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    parse_infer_request,
    request_error,
)

LENGTH_HEADER: Final = b"inference-header-content-length"
"""The HTTP header (lower-case, as ASGI gives it) holding the JSON header's length."""
CONTENT_TYPE: Final = b"application/octet-stream"
"""Content type of a response with a binary tail (the body as a whole is not JSON)."""
SIZE_KEY: Final = "binary_data_size"
MAX_RESPONSE_BYTES: Final = 64 << 20
"""Largest binary tail a response may carry."""

_FORMATS: Final[dict[str, str]] = {
    "BOOL": "B",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
"""struct codes of the fixed-width datatypes; BYTES is length-prefixed instead."""
_LENGTH: Final = struct.Struct("<I")
_MAX_HEADER_DIGITS: Final = 19  # int() of a longer string is slow and never a real body


def _refuse(tensor: str, message: str, rule: str) -> NoReturn:
    raise InvalidInput(f"input {tensor!r}: {message}", rule=rule, details={"input": tensor})


# ---------------------------------------------------------------- requests


class _TensorHead(BaseModel):
    """The fields of one input that locating its bytes needs; the rest is checked later."""

    model_config = ConfigDict(strict=True)

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None


class _RequestHead(BaseModel):
    model_config = ConfigDict(strict=True)

    inputs: list[_TensorHead]


def parse_request(body: bytes, header: bytes | None) -> InferenceRequest:
    """Parse a v2 request: plain JSON, or a JSON header + binary tail when ``header`` is set.

    ``header`` is the raw ``Inference-Header-Content-Length`` value, if the request had one.
    """
    if header is None:
        request = parse_infer_request(body)
        for tensor in request.inputs:
            if tensor.parameters and SIZE_KEY in tensor.parameters:
                _refuse(
                    tensor.name,
                    f"{SIZE_KEY} is set but the request has no Inference-Header-Content-Length "
                    "header, so there is no binary data",
                    "binary_data_size",
                )
        return request
    length = header_length(header, len(body))
    return parse_binary_request(body[:length], memoryview(body)[length:])


def header_length(value: bytes, body_size: int) -> int:
    """The JSON header's length from the HTTP header's value, within ``body_size``."""
    if not (value.isdigit() and len(value) <= _MAX_HEADER_DIGITS) or int(value) > body_size:
        shown = value[:32].decode("latin-1")
        raise InvalidInput(
            f"Inference-Header-Content-Length {shown!r} must be a byte count "
            f"no larger than the body ({body_size} bytes)",
            rule="binary_header_length",
        )
    return int(value)


def parse_binary_request(header: bytes, tail: bytes | memoryview) -> InferenceRequest:
    """Decode each binary input's bytes from ``tail`` into its ``data``, then validate."""
    try:
        doc = from_json(header)
    except ValueError as exc:
        raise InvalidInput(
            f"request header is not valid JSON: {exc}", rule="malformed_json"
        ) from None
    try:
        head = _RequestHead.model_validate(doc)
    except ValidationError as exc:
        raise request_error(exc) from None
    sizes = [_binary_size(t) for t in head.inputs]
    total = sum(s for s in sizes if s is not None)
    if total != len(tail):
        raise InvalidInput(
            f"the inputs' {SIZE_KEY} values add up to {total} bytes but "
            f"{len(tail)} bytes follow the JSON header",
            rule="binary_data_size",
        )
    offset = 0
    for raw, tensor, size in zip(doc["inputs"], head.inputs, sizes, strict=True):
        if size is None:
            continue
        if "data" in raw:
            _refuse(tensor.name, f"has both data and {SIZE_KEY}", "binary_data_size")
        chunk = tail[offset : offset + size]
        raw["data"] = decode_tensor(tensor.name, tensor.datatype, tensor.shape, chunk)
        offset += size
        params = {k: v for k, v in raw["parameters"].items() if k != SIZE_KEY}
        raw["parameters"] = params or None
    try:
        return InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        raise request_error(exc) from None


def _binary_size(tensor: _TensorHead) -> int | None:
    """The input's ``binary_data_size``, or None when its data is in the JSON."""
    size = (tensor.parameters or {}).get(SIZE_KEY)
    if size is None:
        return None
    if type(size) is not int or size < 0:
        _refuse(tensor.name, f"{SIZE_KEY} must be a non-negative integer, not {size!r}", SIZE_KEY)
    return size


def decode_tensor(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> list[Any]:
    """One tensor's elements from its raw bytes, flat and row-major."""
    if datatype not in DATATYPES:
        _refuse(name, f"datatype {datatype!r} is not a v2 datatype", "datatype_unknown")
    if any(d < 0 for d in shape):
        _refuse(name, f"shape {list(shape)} has a negative dimension", "shape_negative")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(name, raw, count)
    code = _FORMATS[datatype]
    expected = count * struct.calcsize(code)
    if len(raw) != expected:
        _refuse(
            name,
            f"shape {list(shape)} of {datatype} takes {expected} bytes "
            f"but {SIZE_KEY} is {len(raw)}",
            "binary_data_size",
        )
    values = list(struct.unpack(f"<{count}{code}", raw))
    if datatype != "BOOL":
        return values
    if any(v > 1 for v in values):
        _refuse(name, "BOOL bytes must be 0 or 1", "binary_bool_value")
    return [v == 1 for v in values]


def _decode_bytes(name: str, raw: bytes | memoryview, count: int) -> list[str]:
    """Length-prefixed UTF-8 elements; the loop is kept lean, it runs once per element."""
    data = bytes(raw)  # slicing bytes is cheaper than a memoryview per element
    out: list[str] = []
    append, unpack = out.append, _LENGTH.unpack_from
    offset, end = 0, len(data)
    try:
        while offset < end:
            (size,) = unpack(data, offset)
            start, offset = offset + 4, offset + 4 + size
            if offset > end:
                _refuse(
                    name,
                    f"BYTES element {len(out)} declares {size} bytes but {end - start} remain",
                    "binary_bytes_length",
                )
            append(data[start:offset].decode("utf-8"))
    except struct.error:
        _refuse(
            name,
            f"BYTES element {len(out)} has {end - offset} bytes left for its 4-byte length",
            "binary_bytes_length",
        )
    except UnicodeDecodeError:
        _refuse(name, f"BYTES element {len(out)} is not UTF-8 text", "binary_bytes_utf8")
    if len(out) != count:
        _refuse(
            name,
            f"shape holds {count} BYTES elements but the binary data holds {len(out)}",
            "shape_data_mismatch",
        )
    return out


# ---------------------------------------------------------------- responses


@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs a response sends as binary: ``name in outputs``."""

    default: bool = False
    """The request's ``binary_data_output``: for outputs that do not say."""
    named: Mapping[str, bool] = field(default_factory=dict)
    """Each requested output's own ``binary_data``, which overrides the default."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.named.get(name, self.default)


def binary_outputs(request: InferenceRequest) -> BinaryOutputs:
    """What the request asks for; checked before inference so a bad flag costs nothing."""
    default = _flag(request.parameters, "binary_data_output", "request")
    named: dict[str, bool] = {}
    for out in request.outputs or ():
        flag = _flag(out.parameters, "binary_data", f"output {out.name!r}")
        if flag is not None:
            named[out.name] = flag
    return BinaryOutputs(default=bool(default), named=named)


def _flag(parameters: Parameters | None, key: str, where: str) -> bool | None:
    value = (parameters or {}).get(key)
    if value is None or type(value) is bool:
        return value
    raise InvalidInput(
        f"{where}: parameter {key} must be true or false, not {value!r}", rule="binary_data_flag"
    )


def encode_response(
    response: InferenceResponse,
    binary: BinaryOutputs,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> tuple[bytes, int | None]:
    """The response body and, when it has a binary tail, the JSON header's length."""
    chosen = [i for i, t in enumerate(response.outputs) if t.name in binary]
    if not chosen:
        return response.model_dump_json(exclude_none=True).encode(), None
    doc = response.model_dump(
        mode="json", exclude_none=True, exclude={"outputs": {i: {"data"} for i in chosen}}
    )
    chunks: list[bytes] = []
    total = 0
    for i in chosen:
        tensor = response.outputs[i]
        chunk = encode_tensor(tensor.datatype, tensor.data)
        total += len(chunk)
        if total > max_bytes:
            raise LimitExceeded(
                f"binary response data over {max_bytes} bytes", rule="max_response_bytes"
            )
        out = doc["outputs"][i]
        out["parameters"] = {**out.get("parameters", {}), SIZE_KEY: len(chunk)}
        chunks.append(chunk)
    header = to_json(doc)
    return header + b"".join(chunks), len(header)


def encode_tensor(datatype: str, data: Sequence[Any]) -> bytes:
    """Flat, already-validated elements as the extension's bytes."""
    if datatype != "BYTES":
        return struct.pack(f"<{len(data)}{_FORMATS[datatype]}", *data)
    parts: list[bytes] = []
    for element in data:
        encoded = element.encode("utf-8")
        if len(encoded) > 0xFFFFFFFF:
            raise LimitExceeded(
                "a BYTES element over 4 GiB cannot be framed", rule="binary_bytes_length"
            )
        parts += (_LENGTH.pack(len(encoded)), encoded)
    return b"".join(parts)
