"""The registry against real MLflow stores: SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from paved.errors import (
    DigestMismatch,
    InvalidInput,
    InvalidName,
    NotFound,
    PermissionDenied,
    UnsafeModel,
)
from paved.schemas import Actor, Role
from registry.digests import manifest_for
from registry.schemas import ModelPackage
from registry.service import Registry
from tests.conftest import write_model_dir

pytestmark = [pytest.mark.integration]


def _pkg(model_dir: Path, team: str = "risk") -> ModelPackage:
    return ModelPackage(
        model_dir=model_dir,
        team=team,
        task="tabular-classification",
        framework="torch",
        kind="test-model",
        git_commit="0" * 40,
        dataset_digest="sha256:" + "1" * 64,
        dataset_description="unit-test data",
        params={"lr": 0.1, "layers": 2},
        metrics={"auc": 0.81},
    )


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def _register(reg: Registry, actor: Actor, tmp: Path, name: str, seed: int = 0, team: str = "risk"):
    d = write_model_dir(tmp / f"{name}-{seed}", seed=seed)
    run = reg.log_package(_pkg(d, team), experiment="paved/test", actor=actor)
    return reg.register_run(name, run, actor=actor), d


def test_register_records_lineage_digests_and_run_data(registry, engineer, tmp_path) -> None:
    name = _name()
    info, d = _register(registry, engineer, tmp_path, name)
    assert info.version == 1
    assert info.lineage.team == "risk"
    assert info.lineage.registered_by == "alice"
    assert info.lineage.git_commit == "0" * 40
    assert info.manifest == manifest_for(d)
    assert info.digest == manifest_for(d).digest
    detail = registry.describe(f"{name}/1")
    assert detail.metrics == {"auc": pytest.approx(0.81)}
    assert detail.params == {"lr": "0.1", "layers": "2"}
    assert "Owner team" in detail.description  # the model card, shown by the MLflow UI
    info2, _ = _register(registry, engineer, tmp_path, name, seed=1)
    assert info2.version == 2
    assert [v.version for v in registry.list_versions(name)] == [1, 2]
    assert registry.get(name).version == 2
    assert any(m.name == name and m.latest_version == 2 for m in registry.list_models())


def test_register_by_run_id_reads_the_run_back(registry, engineer, tmp_path) -> None:
    d = write_model_dir(tmp_path / "by-id")
    logged = registry.log_package(_pkg(d), experiment="paved/test", actor=engineer)
    info = registry.register_run(_name(), logged.run_id, actor=engineer)
    assert info.manifest == manifest_for(d)
    assert info.lineage.run_id == logged.run_id
    assert "Owner team" in info.description


def test_aliases_history_and_protection(registry, engineer, promoter, tmp_path) -> None:
    name = _name()
    _register(registry, engineer, tmp_path, name, 0)
    _register(registry, engineer, tmp_path, name, 1)
    registry.set_alias(name, "challenger", 2, actor=engineer, reason="try v2")
    assert registry.get(f"{name}@challenger").version == 2

    with pytest.raises(PermissionDenied) as info:
        registry.set_alias(name, "champion", 1, actor=engineer)
    assert info.value.rule == "protected_alias"
    admin = Actor(identity="root", roles=frozenset({Role.ADMIN}))
    with pytest.raises(PermissionDenied):
        registry.set_alias(name, "champion", 1, actor=admin)
    with pytest.raises(NotFound):
        registry.get(f"{name}@champion")

    registry.set_alias(name, "champion", 1, actor=promoter)
    registry.set_alias(name, "champion", 2, actor=promoter, reason="canary passed")
    with pytest.raises(PermissionDenied):
        registry.remove_alias(name, "champion", actor=engineer)
    registry.remove_alias(name, "challenger", actor=engineer)

    moves = [
        (e.event, e.alias, e.from_version, e.version, e.actor)
        for e in registry.history(name)
        if e.event != "registered"
    ]
    assert moves == [
        ("alias_set", "challenger", None, 2, "alice"),
        ("alias_set", "champion", None, 1, "promotion-flow"),
        ("alias_set", "champion", 1, 2, "promotion-flow"),
        ("alias_removed", "challenger", 2, None, "alice"),
    ]
    assert registry.get(f"{name}@champion").version == 2


def test_viewer_cannot_write(registry, engineer, tmp_path) -> None:
    name = _name()
    _register(registry, engineer, tmp_path, name)
    viewer = Actor(identity="vic", roles=frozenset({Role.VIEWER}))
    with pytest.raises(PermissionDenied) as info:
        registry.set_alias(name, "challenger", 1, actor=viewer)
    assert "ml-engineer" in info.value.message
    with pytest.raises(PermissionDenied):
        registry.log_package(_pkg(write_model_dir(tmp_path / "v")), experiment="x", actor=viewer)


def test_other_team_cannot_add_versions(registry, engineer, tmp_path) -> None:
    name = _name()
    _register(registry, engineer, tmp_path, name)
    with pytest.raises(PermissionDenied) as info:
        _register(registry, engineer, tmp_path, name, seed=3, team="search")
    assert info.value.rule == "model_owner"
    assert [v.version for v in registry.list_versions(name)] == [1]


def test_fetch_verifies_and_refuses_tampered_artifacts(registry, engineer, tmp_path) -> None:
    name = _name()
    info, _d = _register(registry, engineer, tmp_path, name)
    local = registry.fetch(f"{name}/1")
    assert manifest_for(local) == info.manifest

    # Tamper with the stored artifact itself: the download must be refused.
    stored = Path(info.source.removeprefix("file://")) / "model.safetensors"
    original = stored.read_bytes()
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    # Corrupt the cached copy too, so the registry has to download again.
    (local / "config.json").write_text("{}")
    try:
        with pytest.raises(DigestMismatch) as exc:
            registry.fetch(f"{name}/1")
        assert "model.safetensors" in exc.value.message
        assert not local.exists()
    finally:
        stored.write_bytes(original)
    assert manifest_for(registry.fetch(f"{name}/1")) == info.manifest


def _count_state(registry: Registry, home: Path) -> tuple[int, int, int]:
    models = registry.list_models()
    files = sum(1 for _ in home.rglob("*")) if home.exists() else 0
    versions = sum(len(registry.list_versions(m.name)) for m in models)
    return len(models), versions, files


@pytest.mark.parametrize(
    "bad_name",
    ["../escape", "%2e%2e%2fescape", "%252e%252e%252f", "a\\b", "", "x" * 300, "bad\x07name"],
)
def test_bad_names_write_nothing(registry, engineer, tmp_path, bad_name) -> None:
    d = write_model_dir(tmp_path / "ok")
    run = registry.log_package(_pkg(d), experiment="paved/test", actor=engineer).run_id
    home = Path(registry.cache_dir).parent
    before = _count_state(registry, home)
    with pytest.raises(InvalidName):
        registry.register_run(bad_name, run, actor=engineer)
    with pytest.raises(InvalidName):
        registry.set_alias(bad_name, "challenger", 1, actor=engineer)
    with pytest.raises(InvalidName):
        registry.get(f"{bad_name}/1")
    assert _count_state(registry, home) == before


@pytest.mark.parametrize(
    "extra",
    [
        {"modeling.py": "print('pwned')"},
        {"config.json": '{"auto_map": {"AutoModel": "m.M"}}'},
        {"tokenizer_config.json": '{"trust_remote_code": true}'},
        {"pytorch_model.bin": "pickle"},
    ],
)
def test_unsafe_dirs_write_nothing(registry, engineer, tmp_path, extra) -> None:
    d = write_model_dir(tmp_path / "unsafe", extra=extra)
    home = Path(registry.cache_dir).parent
    before = _count_state(registry, home)
    runs_before = len(
        registry.store.client.search_runs(
            [e.experiment_id for e in registry.store.client.search_experiments()]
        )
    )
    with pytest.raises(UnsafeModel):
        registry.log_package(_pkg(d), experiment="paved/test", actor=engineer)
    assert _count_state(registry, home) == before
    runs_after = len(
        registry.store.client.search_runs(
            [e.experiment_id for e in registry.store.client.search_experiments()]
        )
    )
    assert runs_after == runs_before


def test_foreign_runs_are_refused(registry, engineer) -> None:
    client = registry.store.client
    exp = registry.store.ensure_experiment("paved/foreign")
    run = client.create_run(exp)
    with pytest.raises(InvalidInput) as info:
        registry.register_run(_name(), run.info.run_id, actor=engineer)
    assert info.value.rule == "pavedpath_run"
    with pytest.raises(NotFound):
        registry.register_run(_name(), "f" * 32, actor=engineer)


def test_unknown_versions_and_aliases(registry, engineer, tmp_path) -> None:
    name = _name()
    _register(registry, engineer, tmp_path, name)
    with pytest.raises(NotFound):
        registry.get(f"{name}/99")
    with pytest.raises(NotFound):
        registry.set_alias(name, "challenger", 99, actor=engineer)
    with pytest.raises(NotFound):
        registry.get("no-such-model@champion")
    with pytest.raises(NotFound):
        registry.remove_alias(name, "staging", actor=engineer)
