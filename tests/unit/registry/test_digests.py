from __future__ import annotations

from pathlib import Path

import pytest

from paved.errors import DigestMismatch
from registry.digests import manifest_for, sha256_file, verify
from tests.conftest import write_model_dir

pytestmark = pytest.mark.unit


def test_manifest_lists_every_file_and_is_stable(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m", extra={"sub/vocab.txt": "a b c"})
    m = manifest_for(d)
    assert set(m.files) == {"model.safetensors", "config.json", "sub/vocab.txt"}
    assert m.files["sub/vocab.txt"] == sha256_file(d / "sub" / "vocab.txt")
    assert manifest_for(d).digest == m.digest
    verify(d, m)


@pytest.mark.parametrize("change", ["modify", "delete", "add"])
def test_any_change_is_caught(tmp_path: Path, change: str) -> None:
    d = write_model_dir(tmp_path / "m")
    m = manifest_for(d)
    if change == "modify":
        data = bytearray((d / "model.safetensors").read_bytes())
        data[-1] ^= 1
        (d / "model.safetensors").write_bytes(bytes(data))
    elif change == "delete":
        (d / "config.json").unlink()
    else:
        (d / "extra.json").write_text("{}")
    with pytest.raises(DigestMismatch) as info:
        verify(d, m)
    key = {"modify": "changed", "delete": "missing", "add": "unexpected"}[change]
    assert info.value.details[key]
    assert info.value.status == 422


def test_different_content_different_digest(tmp_path: Path) -> None:
    a = manifest_for(write_model_dir(tmp_path / "a", seed=1))
    b = manifest_for(write_model_dir(tmp_path / "b", seed=2))
    assert a.digest != b.digest
