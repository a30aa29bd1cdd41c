"""A folder of manifests as a ManifestSource: a content hash for head, read at a snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paved.errors import Conflict, InvalidInput
from pipelines.directory_source import DirectorySource

pytestmark = pytest.mark.unit


def manifest(name: str, team: str = "risk") -> str:
    doc = {
        "metadata": {"name": name, "team": team},
        "spec": {"model": "credit-risk", "champion": {"version": 1}},
    }
    return yaml.safe_dump(doc)


def test_head_is_a_hash_of_the_manifests_and_changes_with_them(tmp_path: Path) -> None:
    (tmp_path / "risk.yaml").write_text(manifest("risk"))
    (tmp_path / "chat.yml").write_text(manifest("chat", team="ml"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub.yaml").mkdir()
    source = DirectorySource(tmp_path)
    first = source.head()
    assert first == DirectorySource(tmp_path).head()  # the content, not the reader
    assert source.endpoint_files(first, "local") == {
        "chat.yml": manifest("chat", team="ml"),
        "risk.yaml": manifest("risk"),
    }
    assert source.teams(first) == {"risk", "ml"}

    (tmp_path / "notes.txt").write_text("still not a manifest")
    assert source.head() == first
    (tmp_path / "risk.yaml").write_text(manifest("risk", team="ops"))
    second = source.head()
    assert second != first
    assert source.is_ancestor(first, second)
    assert source.is_ancestor(second, first)  # a folder has no history to go back in
    assert source.teams(second) == {"ops", "ml"}


def test_a_pass_reads_the_snapshot_it_hashed(tmp_path: Path) -> None:
    (tmp_path / "risk.yaml").write_text(manifest("risk"))
    source = DirectorySource(tmp_path)
    head = source.head()
    (tmp_path / "risk.yaml").write_text(manifest("risk", team="ops"))  # edited mid-pass
    assert source.endpoint_files(head, "local") == {"risk.yaml": manifest("risk")}
    with pytest.raises(Conflict) as info:
        source.endpoint_files("0" * 64, "local")
    assert info.value.rule == "manifest_snapshot"


def test_invalid_manifests_are_left_to_the_reconciler(tmp_path: Path) -> None:
    (tmp_path / "risk.yaml").write_text(manifest("risk"))
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    source = DirectorySource(tmp_path)
    head = source.head()
    assert set(source.endpoint_files(head, "local")) == {"bad.yaml", "risk.yaml"}
    assert source.teams(head) == {"risk"}


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_no_folder_or_no_manifests_is_refused(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "m"
    if make == "empty":
        folder.mkdir()
    elif make == "file":
        folder.write_text("x")
    with pytest.raises(InvalidInput) as info:
        DirectorySource(folder).head()
    assert info.value.rule == "manifest_dir"
