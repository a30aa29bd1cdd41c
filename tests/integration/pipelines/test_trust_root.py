"""The trust root with a real registry (MLflow on SQLite), real Git and a raw MlflowClient
playing the attacker who reaches MLflow's write API around Pavedpath: Git pins the
digest, so a rewritten tag or a changed artifact is refused, never served; a champion
moved around the flow is recorded and put back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from paved.errors import DigestMismatch
from paved.manifest import Endpoint
from paved.settings import Settings
from pipelines.gitops.source import GitSource
from pipelines.reconciler import Reconciler, StateStore
from registry import schemas as s
from registry.digests import DigestManifest
from registry.service import Registry
from serving.deploy import plan
from serving.replica import load_model_dir
from tests.integration.pipelines.gitops_helpers import (
    commit_manifest,
    endpoint_doc,
    init_repo,
    registry_with_versions,
)
from tests.integration.pipelines.test_reconciler import RecordingTarget

pytestmark = pytest.mark.integration

MODEL = "credit-risk"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Registry]:
    """Versions 1..3: v2's tags get rewritten (and restored), v3's files get changed."""
    return registry_with_versions(tmp_path_factory.mktemp("trust") / "home", versions=3)


def _reconciler(registry: tuple[Settings, Registry], repo: Path, tmp: Path, env: str) -> Reconciler:
    settings, reg = registry
    return Reconciler(
        source=GitSource(repo),
        registry=reg,
        target=RecordingTarget(),
        state=StateStore(tmp / "state"),
        settings=settings,
        env=env,
        internal_token="t",
    )


@contextlib.contextmanager
def forged(settings: Settings, version: int) -> Iterator[str]:
    """Rewrite a version's digest tags with a raw MlflowClient, consistently (a forged
    manifest and its digest), as anyone reaching MLflow's write API could; restore after."""
    client = MlflowClient(settings.tracking_uri)
    tags = client.get_model_version(MODEL, str(version)).tags
    real = DigestManifest.model_validate_json(tags[s.TAG_DIGESTS])
    fake = DigestManifest(files={**real.files, sorted(real.files)[0]: "0" * 64})
    client.set_model_version_tag(MODEL, str(version), s.TAG_DIGESTS, fake.canonical_json())
    client.set_model_version_tag(MODEL, str(version), s.TAG_DIGEST, fake.digest)
    try:
        yield fake.digest
    finally:
        for tag in (s.TAG_DIGESTS, s.TAG_DIGEST):
            client.set_model_version_tag(MODEL, str(version), tag, tags[tag])


def test_a_tag_rewritten_around_pavedpath_is_refused_and_serving_stays(registry, tmp_path):
    settings, reg = registry
    pinned_v2 = reg.get(f"{MODEL}/2").digest  # what the promotion commit pins
    repo = init_repo(tmp_path / "repo")
    commit_manifest(repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=reg), "1")
    rec = _reconciler(registry, repo, tmp_path, "staging")
    target = rec.target
    assert isinstance(target, RecordingTarget)
    rec.once()
    doc = endpoint_doc("risk", "staging", 2, pins=reg)
    with forged(settings, 2):
        commit_manifest(repo, "staging", "risk.yaml", doc, "v2, pinned before the rewrite")
        report = rec.once()
        [refused] = report.refused
        assert (refused.endpoint, refused.rule) == ("risk", "digest_mismatch")
        assert pinned_v2[:19] in refused.reason
        assert target.routes == {"risk": 1}  # still serving its previous version
        assert target.apps == {"risk--v1"}
        # The replica refuses it too: it verifies against Git's digest, not the tag.
        [(_, spec)] = plan([Endpoint.model_validate(doc)], reg, settings, "t").replicas
        assert spec.digest == pinned_v2
        with pytest.raises(DigestMismatch) as info:
            load_model_dir(spec, reg)
        assert info.value.rule == "digest_mismatch"
    report = rec.once()  # tags restored: the pinned version applies
    assert [(x.endpoint, x.status) for x in report.statuses] == [("risk", "applied")]
    assert target.routes == {"risk": 2}


def test_a_rewritten_tag_of_the_served_version_is_refused_while_it_keeps_serving(
    registry, tmp_path
):
    settings, reg = registry
    repo = init_repo(tmp_path / "repo")
    commit_manifest(repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 2, pins=reg), "2")
    rec = _reconciler(registry, repo, tmp_path, "staging")
    target = rec.target
    assert isinstance(target, RecordingTarget)
    rec.once()
    with forged(settings, 2):
        for _ in range(2):  # every pass, although the files were verified once already
            [refused] = rec.once().refused
            assert refused.rule == "digest_mismatch"
            assert target.routes == {"risk": 2}
            assert target.apps == {"risk--v2"}  # kept on what Git pinned, not restarted
    assert rec.once().refused == []


def test_an_artifact_changed_in_the_store_is_refused_by_the_replica(registry, tmp_path):
    settings, reg = registry
    info = reg.get(f"{MODEL}/3")
    stored = Path(urlparse(info.source).path)
    assert stored.is_dir()
    victim = stored / sorted(info.manifest.files)[0]
    victim.write_bytes(victim.read_bytes() + b"\0")  # the artifact store, not the cache
    doc = endpoint_doc("risk", "staging", 3, pins=reg)
    [(_, spec)] = plan([Endpoint.model_validate(doc)], reg, settings, "t").replicas
    fresh = Registry(reg.store, reg.alias_history, cache_dir=tmp_path / "replica-cache")
    with pytest.raises(DigestMismatch) as err:
        load_model_dir(spec, fresh)  # what ModelReplica.__init__ runs before loading
    assert err.value.rule == "artifact_digest"
    assert not list((tmp_path / "replica-cache").rglob("*.safetensors"))  # nothing kept
    # The reconciler refuses it as well, and the endpoint keeps what it served.
    repo = init_repo(tmp_path / "repo")
    commit_manifest(repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=reg), "1")
    rec = _reconciler(registry, repo, tmp_path, "staging")
    rec.once()
    commit_manifest(repo, "staging", "risk.yaml", doc, "3")
    [refused] = rec.once().refused
    assert refused.rule == "artifact_digest"
    assert isinstance(rec.target, RecordingTarget)
    assert rec.target.routes == {"risk": 1}


def test_an_intact_version_loads_against_its_pin(registry, tmp_path):
    settings, reg = registry
    doc = endpoint_doc("risk", "staging", 1, pins=reg)
    [(_, spec)] = plan([Endpoint.model_validate(doc)], reg, settings, "t").replicas
    fresh = Registry(reg.store, reg.alias_history, cache_dir=tmp_path / "replica-cache")
    loaded = load_model_dir(spec, fresh)
    files = {p.relative_to(loaded).as_posix() for p in loaded.rglob("*") if p.is_file()}
    assert files == set(reg.get(f"{MODEL}/1").manifest.files)


def test_a_champion_moved_around_the_flow_is_recorded_and_put_back(registry, tmp_path):
    settings, reg = registry
    repo = init_repo(tmp_path / "repo")
    commit_manifest(repo, "prod", "risk.yaml", endpoint_doc("risk", "prod", 1, pins=reg), "1")
    rec = _reconciler(registry, repo, tmp_path, "prod")
    [first] = rec.once().champions
    assert first.status in ("moved", "in_sync")
    assert reg.get(f"{MODEL}@champion").version == 1

    MlflowClient(settings.tracking_uri).set_registered_model_alias(MODEL, "champion", "2")
    report = rec.once()
    [ch] = report.champions
    assert (ch.status, ch.outside_flow, ch.registry_version, ch.git_version) == (
        "put_back",
        True,
        2,
        1,
    )
    assert report.outside_flow_total == 1
    assert reg.get(f"{MODEL}@champion").version == 1  # put back to Git's version
    moves = [e for e in reg.alias_history.events(MODEL) if e.alias == "champion"]
    outside = [e for e in moves if e.outside_flow]
    assert [(e.from_version, e.to_version) for e in outside] == [(1, 2)]
    assert (moves[-1].from_version, moves[-1].to_version, moves[-1].outside_flow) == (2, 1, False)
    assert any(h.outside_flow for h in reg.history(MODEL))  # `paved models history` shows it
    text = rec.metrics.exposition().decode()
    assert 'paved_reconciler_champion_outside_flow_total{env="prod",model="credit-risk"} 1.0' in (
        text
    )
    [again] = rec.once().champions
    assert again.status == "in_sync"
