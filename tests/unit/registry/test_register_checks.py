"""Registering by run id refuses a run whose files are outside the allow-list, before
anything is written (a run logged before the allow-list, or forged around Pavedpath)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from paved.errors import InvalidName, UnsafeModel
from paved.schemas import Actor, Role
from registry import schemas as s
from registry.digests import DigestManifest
from registry.history import SqlAliasHistory
from registry.service import Registry
from registry.store import ModelStore, StoredRun

pytestmark = pytest.mark.unit

RUN = "0123456789abcdef0123456789abcdef"
ENGINEER = Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}), team="risk")


class RunStore:
    """Holds one run; records every write a registration would make."""

    def __init__(self, files: dict[str, str]) -> None:
        manifest = DigestManifest(files=files)
        self.run = StoredRun(
            run_id=RUN,
            artifact_uri="file:///nowhere",
            tags={
                s.TAG_DIGEST: manifest.digest,
                s.TAG_DIGESTS: manifest.canonical_json(),
                s.TAG_TEAM: "risk",
            },
        )
        self.writes: list[str] = []

    def get_run(self, run_id: str) -> StoredRun | None:
        return self.run if run_id == RUN else None

    def get_model(self, name: str) -> None:
        return None

    def create_model(self, *args: object) -> None:
        self.writes.append("create_model")

    def create_version(self, *args: object) -> None:
        self.writes.append("create_version")
        raise AssertionError("a refused run must not become a version")


def _registry(tmp_path: Path, store: RunStore) -> Registry:
    history = SqlAliasHistory(f"sqlite:///{tmp_path / 'h.db'}")
    return Registry(cast(ModelStore, store), history, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("name", "rule"),
    [("weights.dat", "file_format"), ("evil.pyw", "no_code"), ("pytorch_model.bin", "no_pickle")],
)
def test_a_run_with_files_outside_the_allow_list_is_refused(
    tmp_path: Path, name: str, rule: str
) -> None:
    store = RunStore({"config.json": "0" * 64, name: "1" * 64})
    with pytest.raises(UnsafeModel) as info:
        _registry(tmp_path, store).register_run("m", RUN, actor=ENGINEER)
    assert info.value.rule == rule
    assert store.writes == []


@pytest.mark.parametrize("run_id", ["../../etc", "X" * 32, "0" * 31, "0" * 100_000])
def test_a_malformed_run_id_is_refused_before_the_store_is_asked(
    tmp_path: Path, run_id: str
) -> None:
    store = RunStore({"config.json": "0" * 64})
    with pytest.raises(InvalidName) as info:
        _registry(tmp_path, store).register_run("m", run_id, actor=ENGINEER)
    assert info.value.rule == "run_id_format"
    assert len(info.value.message) < 200
    assert store.writes == []
