"""The reconciler's control loop with fakes and a step clock: no pass's error stops it,
failures back off and reset, serving stays as it was, a replica set that never starts is
refused for its endpoint alone."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException

from paved.errors import DigestMismatch
from paved.settings import Settings
from pipelines.reconciler import (
    PassRecord,
    Reconciler,
    ReconcileReport,
    StateStore,
    backoff_delay,
)
from serving.deploy import Plan, ReplicasFailed
from serving.gateway.directory import deployment_app_name
from tests.unit.pipelines.gitops_fakes import FakeCatalog, digest_of

pytestmark = pytest.mark.unit

INTERVAL = 5.0
CAP = 30.0


def endpoint_yaml(name: str, version: int, **spec: object) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "pavedpath/v1",
            "kind": "Endpoint",
            "metadata": {"name": name, "env": "staging", "team": "risk"},
            "spec": {
                "model": "credit-risk",
                "champion": {"version": version, "digest": digest_of(version)},
                **spec,
            },
        }
    )


@dataclass
class FakeSource:
    """A linear history of commits; ``failures`` exceptions are raised by head() first."""

    commits: list[dict[str, str]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    def commit(self, **files: str) -> str:
        base = dict(self.commits[-1]) if self.commits else {}
        base.update({f"{k}.yaml": v for k, v in files.items()})
        self.commits.append(base)
        return self.head_id

    @property
    def head_id(self) -> str:
        return f"{len(self.commits):040x}"

    def head(self) -> str:
        if self.failures:
            raise self.failures.pop(0)
        return self.head_id

    def is_ancestor(self, older: str, newer: str) -> bool:
        return int(older, 16) <= int(newer, 16)

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]:
        return dict(self.commits[int(commit, 16) - 1])

    def teams(self, commit: str) -> set[str]:
        return {"risk"}


@dataclass
class FakeRegistry(FakeCatalog):
    """The catalog plus downloads; ``failures`` are raised by get() first (raw errors)."""

    root: Path = Path("/nonexistent")
    failures: list[BaseException] = field(default_factory=list)

    def get(self, ref: str):
        if self.failures:
            raise self.failures.pop(0)
        return super().get(ref)

    def get_pinned(self, ref: str, digest: str):
        info = self.get(ref)
        if info.digest != digest:
            raise DigestMismatch(f"{ref} is not {digest}")
        return info

    def fetch(self, ref: str, *, digest: str | None = None) -> Path:
        if digest is None:
            self.get(ref)
        else:
            self.get_pinned(ref, digest)
        return self.root / ref


@dataclass
class FakeTarget:
    """Running apps and routes as Ray Serve would keep them."""

    apps: set[str] = field(default_factory=set)
    routes: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    never_start: set[str] = field(default_factory=set)  # app names whose replicas hang
    removed: list[str] = field(default_factory=list)

    def ensure_replicas(self, p: Plan) -> list[str]:
        if self.failures:
            raise self.failures.pop(0)
        names = [deployment_app_name(s.endpoint, s.version) for _, s in p.replicas]
        failed = {}
        for (_, spec), name in zip(p.replicas, names, strict=True):
            if name in self.apps:
                continue
            self.started.append(name)
            if name in self.never_start:  # deadline passed: deleted, refused
                self.removed.append(name)
                failed[spec.endpoint] = f"application {name} was not running by its deadline"
            else:
                self.apps.add(name)
        if failed:
            raise ReplicasFailed(failed)
        return names

    def apply_routes(self, p: Plan) -> None:
        self.routes = {ep.name: ep.spec.champion.version for ep in p.endpoints}

    def model_apps(self) -> list[str]:
        return sorted(self.apps)

    def remove(self, names: list[str]) -> None:
        self.apps -= set(names)
        self.removed += names


class LoopClock:
    """Monotonic time that moves only when the loop sleeps; stops after ``passes``."""

    def __init__(self, passes: int) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []
        self.passes = passes

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.sleeps.append(seconds)
        self.t += seconds
        if len(self.sleeps) >= self.passes:
            stop.set()
        return stop.is_set()


@dataclass
class World:
    source: FakeSource
    registry: FakeRegistry
    target: FakeTarget
    store: StateStore
    rec: Reconciler
    records: list[tuple[PassRecord, ReconcileReport | None]]

    def run(self, clock: LoopClock) -> None:
        self.rec.clock = clock
        self.rec.run(threading.Event(), INTERVAL, on_pass=lambda r, p: self.records.append((r, p)))


@pytest.fixture
def world(tmp_path: Path) -> World:
    source = FakeSource()
    source.commit(risk=endpoint_yaml("risk", 1), other=endpoint_yaml("other", 1))
    registry = FakeRegistry(root=tmp_path / "cache")
    target = FakeTarget()
    store = StateStore(tmp_path / "state")
    settings = Settings(home=tmp_path / "home", reconcile_backoff_max_s=CAP)
    rec = Reconciler(
        source=source,
        registry=registry,
        target=target,
        state=store,
        settings=settings,
        env="staging",
        internal_token="t",
    )
    w = World(source, registry, target, store, rec, [])
    rec.once()
    assert target.routes == {"risk": 1, "other": 1}
    return w


def test_backoff_doubles_to_the_cap_and_starts_from_the_interval() -> None:
    assert [backoff_delay(5, n, 30) for n in range(6)] == [5, 10, 20, 30, 30, 30]
    assert backoff_delay(5, 10_000, 30) == 30  # no overflow however long it fails


def test_failing_source_backs_off_keeps_serving_and_resets_after_success(world: World) -> None:
    head = world.source.commit(risk=endpoint_yaml("risk", 2))
    timeout = subprocess.TimeoutExpired(["git", "fetch"], 60)
    world.source.failures = [timeout, timeout, timeout, timeout]
    world.run(LoopClock(passes=7))
    oks = [r.ok for r, _ in world.records]
    assert oks == [False, False, False, False, True, True, True]
    # 10, 20, 30 (capped), 30, then the interval again once a pass succeeds
    assert world.rec.clock.sleeps == [10, 20, 30, 30, 5, 5, 5]  # type: ignore[attr-defined]
    first = world.records[0][0]
    assert first.reason.startswith("TimeoutExpired: ")
    assert first.consecutive_failures == 1
    assert first.next_pass_in_s == 10
    assert world.records[3][0].consecutive_failures == 4
    assert world.records[4][0].commit == head
    assert world.target.routes == {"risk": 2, "other": 1}
    assert world.store.load("staging").commit == head


def test_failures_do_not_move_traffic_and_are_recorded(world: World) -> None:
    before = world.store.load("staging")
    world.source.commit(risk=endpoint_yaml("risk", 2))
    world.registry.failures = [MlflowException("RESOURCE_DOES_NOT_EXIST: database is locked")]
    world.target.failures = [RuntimeError("replica download failed: connection reset")]
    world.run(LoopClock(passes=2))
    assert [r.ok for r, _ in world.records] == [False, False]
    registry_failure, target_failure = (r for r, _ in world.records)
    assert registry_failure.reason.startswith("MlflowException: ")
    assert "database is locked" in registry_failure.reason
    assert target_failure.reason == "RuntimeError: replica download failed: connection reset"
    assert target_failure.consecutive_failures == 2
    # nothing moved: routes, apps and the applied commit are what the last good pass left
    assert world.target.routes == {"risk": 1, "other": 1}
    assert world.target.apps == {"risk--v1", "other--v1"}
    assert world.store.load("staging") == before
    saved = world.store.load_pass("staging")
    assert saved == target_failure  # `paved reconcile --status` reads this


def test_a_failed_pass_then_success_resets_the_backoff(world: World) -> None:
    world.registry.failures = [MlflowException("boom")]
    world.target.failures = [RuntimeError("first"), RuntimeError("second")]
    # pass 1: the registry fails, 2-3: the target fails, 4: ok, 5: the target fails again
    clock = LoopClock(passes=5)
    world.source.commit(risk=endpoint_yaml("risk", 2))
    original = world.target.ensure_replicas
    calls = {"n": 0}

    def ensure(p: Plan) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("third")
        return original(p)

    world.target.ensure_replicas = ensure  # type: ignore[method-assign]
    world.run(clock)
    assert [r.ok for r, _ in world.records] == [False, False, False, True, False]
    assert clock.sleeps == [10, 20, 30, 5, 10]  # after a success it starts from the interval
    assert world.records[4][0].consecutive_failures == 1
    assert world.records[4][0].last_ok_at == world.records[3][0].at

    clock2 = LoopClock(passes=2)
    world.target.failures = [RuntimeError("again")]
    world.records.clear()
    world.run(clock2)
    assert [r.ok for r, _ in world.records] == [False, True]
    assert clock2.sleeps == [10, 5]  # a new run starts its count afresh


def test_loop_stops_on_the_stop_event(world: World) -> None:
    stop = threading.Event()
    stop.set()
    world.rec.clock = LoopClock(passes=100)
    world.rec.run(stop, INTERVAL)
    assert world.rec.clock.sleeps == []

    stop = threading.Event()
    clock = LoopClock(passes=100)
    world.rec.clock = clock
    world.rec.run(stop, INTERVAL, on_pass=lambda r, p: stop.set())  # e.g. SIGTERM mid-pass
    assert clock.sleeps == [INTERVAL]  # the wait returned at once: stop was set


def test_a_broken_reporter_does_not_stop_the_loop(world: World) -> None:
    clock = LoopClock(passes=3)
    world.rec.clock = clock

    def broken(r: PassRecord, p: ReconcileReport | None) -> None:
        raise OSError("stdout closed")

    world.rec.run(threading.Event(), INTERVAL, on_pass=broken)
    assert clock.sleeps == [5, 5, 5]


def test_a_version_that_never_starts_is_refused_for_its_endpoint_only(world: World) -> None:
    world.target.never_start = {"risk--v2"}
    head = world.source.commit(risk=endpoint_yaml("risk", 2), other=endpoint_yaml("other", 2))
    report = world.rec.once()
    statuses = {s.endpoint: s for s in report.statuses}
    assert statuses["risk"].status == "refused"
    assert statuses["risk"].rule == "replica_start"
    assert "not running by its deadline" in statuses["risk"].reason
    assert statuses["other"].status == "applied"  # reconciled in the same pass
    assert world.target.routes == {"risk": 1, "other": 2}
    assert "risk--v2" in world.target.removed  # its resources freed
    assert world.target.apps == {"risk--v1", "other--v2"}
    applied = world.store.load("staging")
    assert applied.commit == head
    assert applied.endpoints["risk"].spec.champion.version == 1  # still what it serves

    # The next pass does not hold the loop on it again until its backoff has passed ...
    world.target.started.clear()
    again = world.rec.once()
    assert [s.rule for s in again.refused] == ["replica_start"]
    assert world.target.started == []
    # ... then it is tried again, and once it starts the endpoint moves.
    world.rec.clock = LoopClock(passes=1)
    world.rec.clock.t = 10**9
    world.target.never_start = set()
    final = world.rec.once()
    assert world.target.started == ["risk--v2"]
    assert {s.endpoint: s.status for s in final.statuses}["risk"] == "applied"
    assert world.target.routes == {"risk": 2, "other": 2}


def test_a_changed_manifest_is_retried_at_once(world: World) -> None:
    world.target.never_start = {"risk--v2"}
    world.source.commit(risk=endpoint_yaml("risk", 2))
    assert [s.endpoint for s in world.rec.once().refused] == ["risk"]
    world.target.never_start = set()
    world.source.commit(risk=endpoint_yaml("risk", 2, limits={"max_inflight": 8}))
    report = world.rec.once()
    assert report.refused == []
    assert world.target.routes["risk"] == 2


def test_a_new_endpoint_that_never_starts_is_not_routed(world: World) -> None:
    world.target.never_start = {"fresh--v1"}
    world.source.commit(fresh=endpoint_yaml("fresh", 1))
    report = world.rec.once()
    assert [s.endpoint for s in report.refused] == ["fresh"]
    assert "fresh" not in world.target.routes
    assert "fresh" not in world.store.load("staging").endpoints
