"""The reconciler's trust root with fakes: Git pins each version's digest, a registry that
disagrees is refused (``digest_mismatch``) while the endpoint keeps serving, files are
hashed once per (version, digest), and one pass per environment runs at a time."""

from __future__ import annotations

import fcntl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from paved.settings import Settings
from pipelines.reconciler import Reconciler, StateStore
from registry.schemas import ModelVersionInfo
from serving.deploy import Plan
from serving.gateway.directory import deployment_app_name
from tests.unit.pipelines.gitops_fakes import FakeCatalog, digest_of

pytestmark = pytest.mark.unit


def manifest(name: str, version: int, *, pin: bool = True, **spec: Any) -> str:
    champion: dict[str, Any] = {"version": version}
    if pin:
        champion["digest"] = digest_of(version)
    return yaml.safe_dump(
        {
            "apiVersion": "pavedpath/v1",
            "kind": "Endpoint",
            "metadata": {"name": name, "env": "staging", "team": "risk"},
            "spec": {"model": "credit-risk", "champion": champion, **spec},
        }
    )


@dataclass
class Source:
    """A linear history of commits; ``hold`` pauses head() until released."""

    commits: list[dict[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def commit(self, **files: str) -> str:
        base = dict(self.commits[-1]) if self.commits else {}
        base.update({f"{k}.yaml": v for k, v in files.items()})
        self.commits.append(base)
        return f"{len(self.commits):040x}"

    def head(self) -> str:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait()
        return f"{len(self.commits):040x}"

    def is_ancestor(self, older: str, newer: str) -> bool:
        return int(older, 16) <= int(newer, 16)

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]:
        return dict(self.commits[int(commit, 16) - 1])

    def teams(self, commit: str) -> set[str]:
        return {"risk"}


@dataclass
class PinRegistry(FakeCatalog):
    """The catalog with a digest per version that a test can rewrite (as a raw MLflow
    client could), and a count of the downloads that hash files."""

    rewritten: dict[int, str] = field(default_factory=dict)
    hashed: list[tuple[str, str | None]] = field(default_factory=list)
    pin_checks: int = 0

    def get(self, ref: str) -> ModelVersionInfo:
        info = super().get(ref)
        if info.version in self.rewritten:
            return info.model_copy(update={"digest": self.rewritten[info.version]})
        return info

    def get_pinned(self, ref: str, digest: str) -> ModelVersionInfo:
        self.pin_checks += 1
        return super().get_pinned(ref, digest)

    def fetch(self, ref: str, *, digest: str | None = None) -> Path:
        if digest is not None:
            self.get_pinned(ref, digest)
        self.hashed.append((ref, digest))
        return Path("/nonexistent") / ref


@dataclass
class Target:
    apps: set[str] = field(default_factory=set)
    routes: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def ensure_replicas(self, p: Plan) -> list[str]:
        names = []
        for _, spec in p.replicas:
            name = deployment_app_name(spec.endpoint, spec.version)
            self.apps.add(name)
            self.digests[name] = spec.digest
            names.append(name)
        return names

    def apply_routes(self, p: Plan) -> None:
        self.routes = {ep.name: ep.spec.champion.version for ep in p.endpoints}

    def model_apps(self) -> list[str]:
        return sorted(self.apps)

    def remove(self, names: list[str]) -> None:
        self.apps -= set(names)


@dataclass
class World:
    source: Source
    registry: PinRegistry
    target: Target
    store: StateStore
    rec: Reconciler


@pytest.fixture
def world(tmp_path: Path) -> World:
    source, registry, target = Source(), PinRegistry(), Target()
    source.commit(risk=manifest("risk", 1), other=manifest("other", 1))
    store = StateStore(tmp_path / "state")
    rec = Reconciler(
        source=source,
        registry=registry,
        target=target,
        state=store,
        settings=Settings(home=tmp_path / "home"),
        env="staging",
        internal_token="t",
    )
    report = rec.once()
    assert [s.status for s in report.statuses] == ["applied", "applied"]
    return World(source, registry, target, store, rec)


def statuses(report: Any) -> dict[str, tuple[str, str | None]]:
    return {s.endpoint: (s.status, s.rule) for s in report.statuses}


def test_replicas_get_the_digest_git_pins(world: World) -> None:
    assert world.target.digests == {"risk--v1": digest_of(1), "other--v1": digest_of(1)}


def test_a_rewritten_digest_of_the_new_version_is_refused_and_serving_stays(
    world: World,
) -> None:
    world.source.commit(risk=manifest("risk", 2), other=manifest("other", 3))  # pinned by Git
    world.registry.rewritten[2] = "sha256:" + "e" * 64  # the tag changed around Pavedpath
    report = world.rec.once()
    assert statuses(report) == {
        "risk": ("refused", "digest_mismatch"),
        "other": ("applied", None),  # the other endpoint still reconciles
    }
    assert world.target.routes == {"risk": 1, "other": 3}  # risk still serves v1
    assert "risk--v1" in world.target.apps
    assert "risk--v2" not in world.target.apps
    assert ("credit-risk/2", digest_of(2)) not in world.registry.hashed
    assert b'rule="digest_mismatch"' in world.rec.metrics.exposition()


def test_a_rewritten_digest_of_the_served_version_is_refused_every_pass(world: World) -> None:
    world.registry.rewritten[1] = "sha256:" + "e" * 64
    for _ in range(2):
        report = world.rec.once()
        assert statuses(report)["risk"] == ("refused", "digest_mismatch")
        assert world.target.routes == {"risk": 1, "other": 1}  # kept, never re-planned
        assert world.target.digests["risk--v1"] == digest_of(1)  # still Git's digest
    del world.registry.rewritten[1]
    assert statuses(world.rec.once())["risk"] == ("unchanged", None)


def test_a_manifest_without_a_digest_is_refused(world: World) -> None:
    world.source.commit(risk=manifest("risk", 2, pin=False))
    report = world.rec.once()
    assert statuses(report)["risk"] == ("refused", "digest_required")
    assert world.target.routes["risk"] == 1


def test_a_challenger_is_pinned_too(world: World) -> None:
    challenger = {"version": 2, "digest": "sha256:" + "e" * 64, "weight": 5}
    world.source.commit(risk=manifest("risk", 1, challenger=challenger))
    assert statuses(world.rec.once())["risk"] == ("refused", "digest_mismatch")
    challenger["digest"] = digest_of(2)
    world.source.commit(risk=manifest("risk", 1, challenger=challenger))
    assert statuses(world.rec.once())["risk"] == ("applied", None)
    assert world.target.digests["risk--v2"] == digest_of(2)


def test_files_are_hashed_once_per_version_and_digest_but_pins_are_checked_every_pass(
    world: World,
) -> None:
    assert sorted(world.registry.hashed) == [("credit-risk/1", digest_of(1))]
    checks = world.registry.pin_checks
    for _ in range(3):
        world.rec.once()
    assert sorted(world.registry.hashed) == [("credit-risk/1", digest_of(1))]  # not again
    assert world.registry.pin_checks >= checks + 3 * 2  # both endpoints, every pass
    world.source.commit(risk=manifest("risk", 2))
    world.rec.once()
    assert sorted(world.registry.hashed) == [
        ("credit-risk/1", digest_of(1)),
        ("credit-risk/2", digest_of(2)),
    ]


def test_one_pass_per_environment_at_a_time(world: World, tmp_path: Path) -> None:
    world.source.hold = threading.Event()
    world.source.entered.clear()
    first = threading.Thread(target=world.rec.once)
    first.start()
    try:
        assert world.source.entered.wait(30)
        lock_file = tmp_path / "state" / ".staging.lock"
        with lock_file.open("w") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the pass in flight
        with (tmp_path / "state" / ".prod.lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another environment is free
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        world.source.hold.set()
        first.join(30)
    with lock_file.open("w") as f:  # released when the pass ends
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(f, fcntl.LOCK_UN)


def test_the_lock_is_released_when_a_pass_fails(world: World, tmp_path: Path) -> None:
    def killed(p: Plan) -> None:
        raise RuntimeError("killed mid-apply")

    world.source.commit(risk=manifest("risk", 2))
    world.target.apply_routes = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.rec.once()
    with (tmp_path / "state" / ".staging.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
