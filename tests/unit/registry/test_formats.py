"""Admission of model files is an allow-list of formats, checked by name and by content."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from paved.errors import UnsafeModel
from registry.digests import manifest_for
from registry.safety import check_model_dir
from tests.conftest import write_model_dir

pytestmark = pytest.mark.unit

PICKLE0 = pickle.dumps({"w": [1.0, 2.0]}, protocol=0)


def _refused(d: Path) -> UnsafeModel:
    with pytest.raises(UnsafeModel) as info:
        check_model_dir(d)
    return info.value


def _safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


TENSOR = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
T = json.dumps(TENSOR)


def _raw(header: str, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header.encode() + data


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("weights.dat", PICKLE0, "file_format"),
        ("evil.pyw", b"import os", "no_code"),
        ("setup.cfg", b"[x]", "file_format"),
        ("noext", b"hello", "file_format"),
        ("vocab.txt", PICKLE0, "no_pickle"),
        ("README.md", pickle.dumps([1], protocol=2), "no_pickle"),
        ("merges.txt", b"a b\n\xff\xfe", "text_format"),
        ("merges.txt", b"a b\x00c", "text_format"),
        ("tokenizer.model", PICKLE0, "no_pickle"),
        ("tokenizer.model", b"not a protobuf", "tokenizer_format"),
        ("config.json", b"[" * 100_000 + b"]" * 100_000, "json_depth"),
        ("config.json", b"[" * 80 + b"]" * 80, "json_depth"),
        ("config.json", b'{"a": 1, "a": 2}', "json_duplicate_key"),
        ("config.json", b'{"x": {"auto_map": {}}, "x": 1}', "json_duplicate_key"),
        ("config.json", b"\xff{}", "json_format"),
        ("extra.safetensors", pickle.dumps({"a": 1}, protocol=5), "no_pickle"),
        ("extra.safetensors", b"\x01\x02", "safetensors_format"),
        ("extra.safetensors", struct.pack("<Q", 10**12) + b"{}", "safetensors_format"),
        ("extra.safetensors", _safetensors({"t": TENSOR}, b"\0" * 4), "safetensors_format"),
        ("extra.safetensors", _safetensors({"t": TENSOR}, b"\0" * 12), "safetensors_format"),
        (
            "extra.safetensors",
            _safetensors({"t": {**TENSOR, "dtype": "PY_OBJECT"}}, b"\0" * 8),
            "safetensors_format",
        ),
        (
            "extra.safetensors",
            _safetensors({"t": {**TENSOR, "shape": [3]}}, b"\0" * 8),
            "safetensors_format",
        ),
        (
            "extra.safetensors",
            _safetensors({"t": TENSOR, "u": TENSOR}, b"\0" * 8),
            "safetensors_format",
        ),
        ("extra.safetensors", struct.pack("<Q", 2) + b"[]", "safetensors_format"),
        ("extra.safetensors", _raw(f'{{"t": {T}, "t": {T}}}', b"\0" * 8), "safetensors_format"),
        ("bad\x1b[2Jname.json", b"{}", "file_name"),
    ],
)
def test_files_outside_the_allow_list_or_not_what_they_claim_are_refused(
    tmp_path: Path, name: str, content: bytes, rule: str
) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / name).write_bytes(content)
    err = _refused(d)
    assert err.rule == rule
    assert len(err.message) < 500
    if rule != "file_name":
        assert repr(name) in err.message


def test_the_bundled_shapes_and_other_tokenizer_files_are_admitted(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}))
    (d / "vocab.txt").write_text("[PAD]\nhello\n")
    (d / "merges.txt").write_text("#version: 0.2\nh e\n")
    (d / "README.md").write_text("# a model\n")
    (d / "chat_template.jinja").write_text("{{ messages }}")
    (d / "LICENSE").write_text("MIT\n")
    # A SentencePiece ModelProto: field 1 (a piece) and field 2 (trainer spec).
    (d / "tokenizer.model").write_bytes(b"\x0a\x03\x0a\x01a" + b"\x12\x00")
    (d / "two.safetensors").write_bytes(
        _safetensors(
            {
                "__metadata__": {"format": "pt"},
                "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
                "a": TENSOR,
            },
            b"\0" * 12,
        )
    )
    (d / "sub").mkdir()
    (d / "sub" / "config.json").write_text("{}")
    manifest = check_model_dir(d)
    assert manifest == manifest_for(d)
    assert "sub/config.json" in manifest.files


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    os.mkfifo(d / "weights.safetensors")
    err = _refused(d)
    assert err.rule == "regular_files"
    assert "weights.safetensors" in err.message


def test_a_socket_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(d / "s.json"))
        assert _refused(d).rule == "regular_files"


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / "more").symlink_to(write_model_dir(tmp_path / "other"))
    assert _refused(d).rule == "no_symlinks"


def test_names_are_checked_before_any_content_is_read(tmp_path: Path) -> None:
    """A name outside the allow-list is refused before any content is read."""
    d = write_model_dir(tmp_path / "m")
    (d / "config.json").write_bytes(b"[" * 200)
    (d / "z.pyw").write_text("x")
    assert _refused(d).rule == "no_code"


def test_an_unreadable_file_is_refused_with_a_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS refusing to open a file is a refusal with a rule, not a traceback.

    Permission bits do not stop root (CI runs as root), so the refusal is the OS's
    error injected at the one call that opens model files."""
    d = write_model_dir(tmp_path / "m")
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith("config.json"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    assert _refused(d).rule == "readable"
