"""The file formats a model directory may hold, admitted by name and by content.

Admission is an allow-list: safetensors weights, JSON (configs, tokenizers), plain
text (vocabularies, merges, model cards, chat templates) and SentencePiece tokenizer
models. Every other file is refused with the rule that refused it, whatever it holds.
Each file's content must parse as the format its name claims, so a pickle renamed
``weights.dat``, ``vocab.txt`` or ``model.safetensors`` is refused as well.

:func:`check_file` reads a file once: the bytes it checks are the bytes it hashes, so
the digest recorded at registration pins exactly what was admitted.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickletools
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from paved.errors import UnsafeModel
from paved.text import has_control, quote

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
MAX_NAME_CHARS = 255
_CHUNK = 1 << 20

TEXT_SUFFIXES = frozenset({".txt", ".md", ".vocab", ".jinja"})
TEXT_NAMES = frozenset({"LICENSE", "NOTICE", "README"})
SUFFIX_FORMATS: dict[str, str] = {
    ".safetensors": "safetensors",
    ".json": "json",
    ".model": "tokenizer model",
    **dict.fromkeys(TEXT_SUFFIXES, "text"),
}
# Named only to give a clearer reason: they are refused like every unlisted suffix.
CODE_SUFFIXES = frozenset(
    {".py", ".pyw", ".pyc", ".pyo", ".pyx", ".so", ".dll", ".dylib", ".sh", ".ipynb", ".js"}
)
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5"}
)
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# Bits per element of each safetensors dtype.
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
# Top-level fields of SentencePiece's ModelProto, all length-delimited messages.
_SENTENCEPIECE_FIELDS = frozenset({1, 2, 3, 4, 5})


def _refuse(rel: str, why: str, rule: str) -> UnsafeModel:
    return UnsafeModel(f"model file {quote(rel)} {why}", rule=rule)


def check_name(rel: str) -> str:
    """The format a file's name admits it as; refuse names outside the allow-list."""
    parts = rel.split("/")
    if any(has_control(p) or len(p) > MAX_NAME_CHARS for p in parts):
        raise _refuse(rel, "has a name with control characters or over 255 characters", "file_name")
    name = parts[-1]
    suffix = os.path.splitext(name)[1].lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if name in TEXT_NAMES:
        return "text"
    if suffix in CODE_SUFFIXES:
        raise _refuse(rel, "is code; models are loaded by Pavedpath's own code only", "no_code")
    if suffix in PICKLE_SUFFIXES:
        raise _refuse(rel, "is a pickle-capable format; store weights as safetensors", "no_pickle")
    raise _refuse(
        rel,
        "is not an admitted format: a model directory holds safetensors, JSON, plain "
        "text (.txt, .md, .vocab, .jinja) and SentencePiece .model files only",
        "file_format",
    )


def check_file(path: Path, rel: str, fmt: str) -> str:
    """Check one regular file's content against ``fmt``; return the sha256 of its bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise _refuse(rel, f"cannot be opened ({exc.strerror})", "readable") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(rel, "is not a regular file", "regular_files")
        digest = hashlib.sha256()
        try:
            if fmt == "safetensors":
                _check_safetensors(f, info.st_size, rel, digest.update)
            else:
                limit = MAX_JSON_BYTES if fmt == "json" else MAX_TEXT_BYTES
                data = f.read(limit + 1)
                if len(data) > limit:
                    raise _refuse(rel, f"is larger than {limit} bytes", "max_file_size")
                digest.update(data)
                _CONTENT_CHECKS[fmt](data, rel)
        except OSError as exc:
            raise _refuse(rel, f"cannot be read ({exc.strerror})", "readable") from exc
    return digest.hexdigest()


def _check_safetensors(f: BinaryIO, size: int, rel: str, update: Callable[[bytes], Any]) -> None:
    head = f.read(8)
    if head[:2] in _PICKLE_MAGIC:
        raise _refuse(rel, "is a pickle, not safetensors; it is never loaded", "no_pickle")
    if len(head) < 8:
        raise _refuse(rel, "is too short to be safetensors", "safetensors_format")
    n = int.from_bytes(head, "little")
    if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
        raise _refuse(rel, f"declares a {n}-byte header that does not fit", "safetensors_format")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _refuse(
            rel, "has a safetensors header that is not JSON", "safetensors_format"
        ) from exc
    _check_safetensors_header(header, size - 8 - n, rel)
    update(head)
    update(raw)
    read = 8 + n
    while chunk := f.read(_CHUNK):
        update(chunk)
        read += len(chunk)
    if read != size:
        raise _refuse(rel, "changed while it was read", "safetensors_format")


def _check_safetensors_header(header: Any, data_len: int, rel: str) -> None:
    """The rules the safetensors loader applies: known dtypes, sizes that match the
    shapes, and tensors that tile the data section exactly (no gap, no overlap)."""

    def bad(why: str) -> UnsafeModel:
        return _refuse(rel, f"has an invalid safetensors header: {why}", "safetensors_format")

    if not isinstance(header, dict):
        raise bad("not a JSON object")
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise bad("__metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {quote(name)} needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BITS:
            raise bad(f"tensor {quote(name)} has unknown dtype {quote(dtype)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {quote(name)} has an invalid shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len
        ):
            raise bad(f"tensor {quote(name)} has offsets outside the file")
        bits = math.prod(shape) * _DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            raise bad(f"tensor {quote(name)} has a size that does not match its shape")
        spans.append((offsets[0], offsets[1]))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise bad("tensors overlap or leave gaps in the data")
        end = stop
    if end != data_len:
        raise bad("the data section is not exactly the tensors")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise _DuplicateKey
    return doc


def _check_json(data: bytes, rel: str) -> None:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError as exc:
        raise _refuse(rel, f"nests deeper than {MAX_JSON_DEPTH} levels", "json_depth") from exc
    except _DuplicateKey as exc:
        raise _refuse(rel, "repeats a key in one object", "json_duplicate_key") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(rel, f"is not valid JSON: {quote(exc, 120)}", "json_format") from exc
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _refuse(rel, f"nests deeper than {MAX_JSON_DEPTH} levels", "json_depth")
        if isinstance(node, dict):
            if "auto_map" in node:
                raise _refuse(
                    rel,
                    "declares auto_map (custom model code); remote code is never loaded",
                    "no_remote_code",
                )
            if node.get("trust_remote_code"):
                raise _refuse(
                    rel, "sets trust_remote_code; remote code is never loaded", "no_remote_code"
                )
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _is_pickle(data: bytes) -> bool:
    """Whether ``data`` is a complete pickle opcode stream (any protocol, even 0, which
    is printable ASCII). Only parsed, never loaded."""
    try:
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
    except Exception:  # any parse failure means "not a pickle"
        return False
    return True


def _check_text(data: bytes, rel: str) -> None:
    if _is_pickle(data):
        raise _refuse(rel, "is a pickle, not text; it is never loaded", "no_pickle")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(rel, "is not UTF-8 text", "text_format") from exc
    if "\x00" in text:
        raise _refuse(rel, "contains NUL bytes; text files hold text only", "text_format")


def _check_tokenizer_model(data: bytes, rel: str) -> None:
    """A SentencePiece model: a protobuf whose top-level fields are ModelProto's."""
    pos, seen_pieces = 0, False
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire_type = key >> 3, key & 7
            if field not in _SENTENCEPIECE_FIELDS or wire_type != 2:
                raise ValueError(field)
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError(length)
            pos += length
            seen_pieces = seen_pieces or field == 1
    except ValueError:
        seen_pieces = False
    if not seen_pieces:
        if _is_pickle(data):
            raise _refuse(rel, "is a pickle, not a tokenizer model", "no_pickle")
        raise _refuse(rel, "is not a SentencePiece model", "tokenizer_format")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(data):
            raise ValueError(pos)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError(pos)


_CONTENT_CHECKS: dict[str, Callable[[bytes, str], None]] = {
    "json": _check_json,
    "text": _check_text,
    "tokenizer model": _check_tokenizer_model,
}
