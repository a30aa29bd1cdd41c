"""Serving reads the kind table: every backend it names exists, and a version's task
decides its endpoint's protocol, its backend and its replica's environment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from paved.errors import InvalidInput
from paved.kinds import KINDS, VLLM_ENV
from paved.manifest import Endpoint
from paved.settings import Settings
from registry.digests import DigestManifest
from registry.schemas import Lineage, ModelVersionInfo
from registry.service import Registry
from serving.deploy import Plan, plan, replica_deployment
from serving.replica import BACKENDS, ReplicaSpec, build_backend

pytestmark = pytest.mark.unit

MANIFEST = DigestManifest(files={"model.safetensors": "0" * 64})


class Versions:
    """The registry as planning sees it: each version of ``m`` with a task."""

    def __init__(self, tasks: dict[int, str]) -> None:
        self.tasks = tasks

    def get(self, ref: str) -> ModelVersionInfo:
        version = int(ref.rsplit("/", 1)[1])
        return ModelVersionInfo(
            name="m",
            version=version,
            aliases=[],
            status="READY",
            source=f"file:///artifacts/m/{version}",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            lineage=Lineage(
                team="risk",
                task=self.tasks[version],
                framework="torch",
                git_commit="0" * 40,
                dataset_digest="unknown",
                registered_by="tester",
                run_id=None,
            ),
            digest=MANIFEST.digest,
            manifest=MANIFEST,
        )


def _endpoint(challenger: bool = False) -> Endpoint:
    spec: dict[str, object] = {"model": "m", "champion": {"version": 1}}
    if challenger:
        spec["challenger"] = {"version": 2, "weight": 10}
    return Endpoint.model_validate({"metadata": {"name": "ep", "team": "risk"}, "spec": spec})


def _plan(tasks: dict[int, str], tmp_path: Path) -> Plan:
    return plan(
        [_endpoint(challenger=len(tasks) > 1)],
        cast(Registry, Versions(tasks)),
        Settings(home=tmp_path),
        "t" * 32,
    )


@pytest.mark.parametrize("task", sorted(KINDS))
def test_every_kind_has_its_backend(task: str, tmp_path: Path) -> None:
    kind = KINDS[task]
    assert kind.backend in BACKENDS, f"{task}: no backend named {kind.backend!r}"
    spec = _plan({1: task}, tmp_path).replicas[0][1]
    assert build_backend(spec, tmp_path).kind == kind.backend  # built, not started


def test_no_backend_goes_unused() -> None:
    assert set(BACKENDS) == {k.backend for k in KINDS.values()}


@pytest.mark.parametrize(
    ("task", "protocol", "env"),
    [("text-generation", "openai", dict(VLLM_ENV)), ("tabular-classification", "v2", {})],
)
def test_the_task_decides_protocol_and_replica_environment(
    task: str, protocol: str, env: dict[str, str], tmp_path: Path
) -> None:
    p = _plan({1: task}, tmp_path)
    assert p.protocols == {"ep": protocol}
    ep, spec = p.replicas[0]
    dep, _ = replica_deployment(ep, spec)
    assert dep.ray_actor_options["runtime_env"] == {"env_vars": env}


@pytest.mark.parametrize(
    "tasks",
    [{1: "image-segmentation"}, {1: "text-generation", 2: "tabular-classification"}],
)
def test_unknown_or_mixed_tasks_are_refused_at_planning(
    tasks: dict[int, str], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput) as exc:
        _plan(tasks, tmp_path)
    assert exc.value.rule == "task"


def test_a_replica_of_an_unknown_task_is_refused(tmp_path: Path) -> None:
    spec = _plan({1: "tabular-classification"}, tmp_path).replicas[0][1]
    odd = ReplicaSpec.model_validate(spec.model_dump() | {"task": "image-segmentation"})
    with pytest.raises(InvalidInput) as exc:
        build_backend(odd, tmp_path)
    assert exc.value.rule == "task"
