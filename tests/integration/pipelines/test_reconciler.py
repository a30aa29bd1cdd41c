"""Reconciler logic against real Git and a real registry, with a recording target."""

from __future__ import annotations

from pathlib import Path

import pytest

from paved.errors import Conflict
from pipelines.gitops.source import GitSource
from pipelines.reconciler import Reconciler, StateStore
from serving.deploy import Plan
from serving.gateway.directory import deployment_app_name
from tests.integration.pipelines.gitops_helpers import (
    commit_manifest,
    endpoint_doc,
    git,
    init_repo,
    registry_with_versions,
)

pytestmark = pytest.mark.integration


class RecordingTarget:
    """Keeps the set of running apps and the routes, like Ray Serve would."""

    def __init__(self, fail_routes_once: bool = False) -> None:
        self.apps: set[str] = set()
        self.routes: dict[str, int] = {}
        self.started: list[str] = []
        self.fail_routes_once = fail_routes_once

    def ensure_replicas(self, p: Plan) -> list[str]:
        names = [deployment_app_name(s.endpoint, s.version) for _, s in p.replicas]
        self.started += [n for n in names if n not in self.apps]
        self.apps |= set(names)
        return names

    def apply_routes(self, p: Plan) -> None:
        if self.fail_routes_once:
            self.fail_routes_once = False
            raise RuntimeError("killed mid-apply")
        self.routes = {ep.name: ep.spec.champion.version for ep in p.endpoints}

    def model_apps(self) -> list[str]:
        return sorted(self.apps)

    def remove(self, names: list[str]) -> None:
        self.apps -= set(names)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    return registry_with_versions(tmp_path_factory.mktemp("reg") / "home", versions=2)


def _reconciler(registry, repo: Path, state: Path, target: RecordingTarget) -> Reconciler:
    settings, reg = registry
    return Reconciler(
        source=GitSource(repo),
        registry=reg,
        target=target,
        state=StateStore(state),
        settings=settings,
        env="staging",
        internal_token="t",
    )


def test_applies_head_and_switches_versions_without_restarting_others(registry, tmp_path):
    repo = init_repo(tmp_path / "repo")
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=registry[1]), "v1"
    )
    commit_manifest(
        repo, "staging", "other.yaml", endpoint_doc("other", "staging", 1, pins=registry[1]), "o"
    )
    target = RecordingTarget()
    rec = _reconciler(registry, repo, tmp_path / "state", target)
    report = rec.once()
    assert {s.endpoint: s.status for s in report.statuses} == {
        "risk": "applied",
        "other": "applied",
    }
    assert target.routes == {"risk": 1, "other": 1}
    head = commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 2, pins=registry[1]), "v2"
    )
    target.started.clear()
    report = rec.once()
    assert report.commit == head
    assert {s.endpoint: s.status for s in report.statuses} == {
        "risk": "applied",
        "other": "unchanged",
    }
    assert target.started == ["risk--v2"]  # nothing else restarted
    assert target.routes == {"risk": 2, "other": 1}
    assert target.apps == {"risk--v2", "other--v1"}  # v1 removed after the switch
    assert StateStore(tmp_path / "state").load("staging").commit == head


@pytest.mark.parametrize(
    ("doc", "rule"),
    [
        (endpoint_doc("risk", "staging", 99), "unknown_version"),
        (endpoint_doc("risk", "staging", 1, team="nobody"), "unknown_team"),
        (endpoint_doc("risk", "prod", 1), "manifest_env"),
        (endpoint_doc("wrong-name", "staging", 1), "manifest_name"),
        (
            endpoint_doc("risk", "staging", 1, challenger={"version": 2, "weight": 150}),
            "manifest_schema",
        ),
        (endpoint_doc("risk", "staging", 1, surprise=True), "manifest_schema"),
        (endpoint_doc("risk", "staging", 1, model="../etc"), "no_path_traversal"),
        ("spec: [unclosed", "manifest_yaml"),
        (endpoint_doc("risk", "staging", 1, model="no-such-model"), "unknown_version"),
    ],
)
def test_invalid_manifest_is_refused_and_serving_stays(registry, tmp_path, doc, rule):
    repo = init_repo(tmp_path / "repo")
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=registry[1]), "v1"
    )
    commit_manifest(
        repo, "staging", "other.yaml", endpoint_doc("other", "staging", 1, pins=registry[1]), "o"
    )
    target = RecordingTarget()
    rec = _reconciler(registry, repo, tmp_path / "state", target)
    rec.once()
    before = (set(target.apps), dict(target.routes))
    commit_manifest(repo, "staging", "risk.yaml", doc, "bad change")
    commit_manifest(
        repo, "staging", "other.yaml", endpoint_doc("other", "staging", 2, pins=registry[1]), "o2"
    )
    report = rec.once()
    refused = {s.endpoint: s for s in report.refused}
    assert set(refused) == {"risk"}
    assert refused["risk"].rule == rule
    assert refused["risk"].reason
    assert target.routes["risk"] == before[1]["risk"]  # risk still serves v1
    assert "risk--v1" in target.apps
    assert target.routes["other"] == 2  # the other endpoint still reconciled


def test_never_applies_an_older_commit(registry, tmp_path):
    repo = init_repo(tmp_path / "repo")
    first = commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=registry[1]), "v1"
    )
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 2, pins=registry[1]), "v2"
    )
    target = RecordingTarget()
    rec = _reconciler(registry, repo, tmp_path / "state", target)
    rec.once()
    git(repo, "reset", "-q", "--hard", first)  # history rewritten to an older commit
    with pytest.raises(Conflict) as info:
        rec.once()
    assert info.value.rule == "no_going_back"
    assert target.routes == {"risk": 2}


def test_killed_mid_apply_converges_on_the_next_pass(registry, tmp_path):
    repo = init_repo(tmp_path / "repo")
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=registry[1]), "v1"
    )
    target = RecordingTarget()
    _reconciler(registry, repo, tmp_path / "state", target).once()
    head = commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 2, pins=registry[1]), "v2"
    )
    target.fail_routes_once = True
    with pytest.raises(RuntimeError):
        _reconciler(registry, repo, tmp_path / "state", target).once()
    assert StateStore(tmp_path / "state").load("staging").commit != head  # not recorded
    assert target.routes == {"risk": 1}  # traffic never moved
    report = _reconciler(registry, repo, tmp_path / "state", target).once()  # a new process
    assert report.commit == head
    assert target.routes == {"risk": 2}
    assert target.apps == {"risk--v2"}


def test_removed_manifest_removes_the_endpoint(registry, tmp_path):
    repo = init_repo(tmp_path / "repo")
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=registry[1]), "v1"
    )
    target = RecordingTarget()
    rec = _reconciler(registry, repo, tmp_path / "state", target)
    rec.once()
    git(repo, "rm", "-q", "environments/staging/risk.yaml")
    git(repo, "commit", "-q", "-m", "retire risk")
    report = rec.once()
    assert [(s.endpoint, s.status) for s in report.statuses] == [("risk", "removed")]
    assert target.apps == set()
