from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from paved.errors import InvalidSourceURI, UnsafeModel
from registry.safety import check_model_dir, validate_source_uri
from tests.conftest import write_model_dir

pytestmark = pytest.mark.unit

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"modeling_evil.py": "import os"}, "no_code"),
        ({"sub/hook.so": "x"}, "no_code"),
        ({"pytorch_model.bin": "x"}, "no_pickle"),
        ({"weights.pt": "x"}, "no_pickle"),
        ({"model.pkl": "x"}, "no_pickle"),
        ({"c.json": json.dumps({"auto_map": {"AutoModel": "evil.Model"}})}, "no_remote_code"),
        ({"c.json": json.dumps({"nested": [{"auto_map": {}}]})}, "no_remote_code"),
        ({"c.json": json.dumps({"trust_remote_code": True})}, "no_remote_code"),
        ({"c.json": "{not json"}, "json_format"),
    ],
)
def test_unsafe_model_dirs_are_refused(tmp_path: Path, extra: dict[str, str], rule: str) -> None:
    d = write_model_dir(tmp_path / "m", extra=extra)
    with pytest.raises(UnsafeModel) as info:
        check_model_dir(d)
    assert info.value.rule == rule


def test_pickle_disguised_as_safetensors_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / "model.safetensors").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(UnsafeModel) as info:
        check_model_dir(d)
    assert info.value.rule == "no_pickle"


def test_symlink_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / "link.json").symlink_to("/etc/hostname")
    with pytest.raises(UnsafeModel) as info:
        check_model_dir(d)
    assert info.value.rule == "no_symlinks"


def test_trust_remote_code_false_and_plain_dirs_pass(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m", extra={"t.json": json.dumps({"trust_remote_code": False})})
    check_model_dir(d)


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("", "not_empty"),
        ("/etc/passwd", "source_local_path"),
        ("./model", "source_local_path"),
        ("model", "source_local_path"),
        ("file:///etc/passwd", "source_local_path"),
        ("FILE:///tmp/x", "source_local_path"),
        ("C:\\models\\x", "no_path_traversal"),
        ("C:/models/x", "source_local_path"),
        ("http://169.254.169.254/latest/meta-data/", "source_internal_host"),
        ("http://metadata.google.internal/computeMetadata/v1/", "source_internal_host"),
        ("http://[fd00:ec2::254]/latest", "source_internal_host"),
        ("http://127.0.0.1:8080/model", "source_internal_host"),
        ("http://10.0.0.5/model", "source_internal_host"),
        ("https://example.com/model", "source_scheme"),
        ("s3://bucket/model", "source_scheme"),
        ("ftp://host/model", "source_scheme"),
        ("hdfs://nn/model", "source_scheme"),
        (f"runs:/{RUN}/../../etc", "no_path_traversal"),
        (f"runs:/{RUN}/%2e%2e/%2e%2e/etc", "no_path_traversal"),
        (f"runs:/{RUN}/%252e%252e/x", "no_path_traversal"),
        ("runs:/not-a-run/model", "source_runs_format"),
        (f"runs:/{RUN}", "source_runs_format"),
        (f"runs:/{RUN}/model\x00", "no_control"),
        ("s3://allowed/models/../../other", "no_path_traversal"),
    ],
)
def test_bad_source_uris(uri: str, rule: str) -> None:
    with pytest.raises(InvalidSourceURI) as info:
        validate_source_uri(uri, ["s3://allowed/models/"])
    assert info.value.rule == rule


def test_good_source_uris() -> None:
    assert validate_source_uri(f"runs:/{RUN}/model") == f"runs:/{RUN}/model"
    assert validate_source_uri("s3://allowed/models/a", ["s3://allowed/models/"]) == (
        "s3://allowed/models/a"
    )
