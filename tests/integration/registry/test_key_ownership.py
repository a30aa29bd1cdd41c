"""Ownership from the key: an authenticated key registers for its own team only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from paved.errors import PermissionDenied
from paved.schemas import Actor, Role
from registry.schemas import ModelPackage
from registry.service import Registry
from tests.conftest import write_model_dir

pytestmark = [pytest.mark.integration]


def key_actor(key_id: str, team: str, *roles: Role) -> Actor:
    return Actor(identity=f"key:{key_id}", roles=frozenset(roles), team=team, key_id=key_id)


SEARCH_KEY = key_actor("5ea4c40000000001", "search", Role.ML_ENGINEER)
RISK_KEY = key_actor("415c000000000002", "risk", Role.ML_ENGINEER)
ADMIN_KEY = key_actor("ad00000000000003", "platform", Role.ADMIN)


def package(tmp: Path, team: str) -> ModelPackage:
    return ModelPackage(
        model_dir=write_model_dir(tmp / uuid.uuid4().hex[:8]),
        team=team,
        task="tabular-classification",
        framework="torch",
        git_commit="0" * 40,
        dataset_digest="sha256:" + "1" * 64,
        dataset_description="test data",
    )


def test_a_key_registers_for_its_own_team_only(registry: Registry, tmp_path: Path) -> None:
    name = f"own-{uuid.uuid4().hex[:8]}"
    run = registry.log_package(package(tmp_path, "risk"), experiment="paved/t", actor=RISK_KEY)
    # A search key cannot register a run that claims team risk as the owner ...
    with pytest.raises(PermissionDenied) as info:
        registry.register_run(name, run, actor=SEARCH_KEY)
    assert info.value.rule == "owner_team"
    assert name not in {m.name for m in registry.list_models()}
    # ... the risk key can, and the model is risk's.
    v = registry.register_run(name, run, actor=RISK_KEY)
    assert (v.lineage.team, v.lineage.registered_by) == ("risk", RISK_KEY.identity)
    # An admin key may add a version for another team (the owner check still applies).
    run2 = registry.log_package(package(tmp_path, "risk"), experiment="paved/t", actor=ADMIN_KEY)
    assert registry.register_run(name, run2, actor=ADMIN_KEY).version == 2
