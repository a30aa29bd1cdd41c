"""Spec changes on the real stack (Ray Serve, gateway, registry, Git): a manifest commit
that changes a running version's limits or replica count is applied, not reported
applied and dropped; a version whose replicas cannot start is refused for its endpoint
alone at the deadline, with its application deleted."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from ray import serve

from bundled.credit_risk.data import generate
from bundled.credit_risk.model import load
from paved.manifest import Endpoint
from paved.schemas import Role
from pipelines.gitops.source import GitSource
from pipelines.reconciler import Reconciler, StateStore
from serving.deploy import RayServeTarget, deployed_model, plan, replica_deployment
from serving.internal_auth import new_token
from serving.keys import KeyStore
from tests.integration.pipelines.gitops_helpers import (
    commit_manifest,
    endpoint_doc,
    init_repo,
    registry_with_versions,
)
from tests.utils.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _infer_body(model_dir: Path, rows: int) -> dict[str, object]:
    frame = generate(100, seed=5)
    inputs = []
    for spec in load(model_dir).input_schema():
        values = [frame.columns[spec.name][i] for i in range(rows)]
        values = [v.item() if hasattr(v, "item") else v for v in values]
        inputs.append(
            {"name": spec.name, "shape": [rows], "datatype": spec.datatype, "data": values}
        )
    return {"inputs": inputs}


def _replicas(app: str) -> dict[str, int]:
    states = serve.status().applications[app].deployments["model"].replica_states
    return {str(state): n for state, n in states.items()}


def _steady_client(
    url: str, auth: dict[str, str], body: object, stop: threading.Event
) -> tuple[Counter[str], threading.Thread]:
    """Requests one after another until stopped; counts each outcome."""
    outcomes: Counter[str] = Counter()

    def loop() -> None:
        with httpx.Client(timeout=30, headers=auth) as client:
            while not stop.is_set():
                try:
                    outcomes[str(client.post(url, json=body).status_code)] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return outcomes, thread


def test_spec_changes_are_applied_and_a_replica_that_cannot_start_is_refused(
    tmp_path: Path,
) -> None:
    settings, reg = registry_with_versions(tmp_path / "home", versions=1)
    settings = settings.model_copy(update={"replica_start_timeout_s": 30.0})
    repo = init_repo(tmp_path / "repo")
    commit_manifest(
        repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=reg), "v1"
    )
    key, _ = KeyStore(settings.tracking_uri).create(
        team="risk", roles=frozenset({Role.APP}), created_by="test"
    )
    port = free_port()
    target = RayServeTarget(settings, host="127.0.0.1", port=port, internal_token=new_token())
    target.start()
    rec = Reconciler(
        source=GitSource(repo),
        registry=reg,
        target=target,
        state=StateStore(tmp_path / "state"),
        settings=settings,
        env="staging",
        internal_token=target.gateway_spec.internal_token,
    )
    model_dir = reg.fetch("credit-risk/1")
    url = f"http://127.0.0.1:{port}/v2/models/risk/infer"
    auth = {"authorization": f"Bearer {key}"}
    try:
        rec.once()
        with httpx.Client(timeout=30, headers=auth) as client:
            assert client.post(url, json=_infer_body(model_dir, 3)).status_code == 200

            # A limit: gateway and replica get it from the same manifest values.
            doc = endpoint_doc("risk", "staging", 1, pins=reg, limits={"max_batch_rows": 2})
            commit_manifest(repo, "staging", "risk.yaml", doc, "max_batch_rows 2")
            stop = threading.Event()
            outcomes, loop = _steady_client(url, auth, _infer_body(model_dir, 1), stop)
            try:
                report = rec.once()
            finally:
                stop.set()
                loop.join(timeout=60)
            # the new replica set ran before the old one left: no request went unserved
            assert set(outcomes) == {"200"}, outcomes
            assert [s.status for s in report.statuses] == ["applied"]
            ep = Endpoint.model_validate(doc)
            [(_, spec)] = plan([ep], reg, settings, rec.internal_token).replicas
            assert spec.max_batch_rows == 2
            # Serve now runs the replica set of the new spec (one replica again after
            # the surge), not the old one.
            assert deployed_model("risk--v1") == (replica_deployment(ep, spec)[1], 1)
            assert _replicas("risk--v1") == {"RUNNING": 1}
            r = client.post(url, json=_infer_body(model_dir, 3))
            assert r.status_code == 400, r.text
            assert client.post(url, json=_infer_body(model_dir, 2)).status_code == 200

            # A replica count: scaled in place, same version.
            version = deployed_model("risk--v1")
            doc = endpoint_doc(
                "risk",
                "staging",
                1,
                pins=reg,
                limits={"max_batch_rows": 2},
                replicas={"min": 2, "max": 2},
            )
            commit_manifest(repo, "staging", "risk.yaml", doc, "two replicas")
            report = rec.once()
            assert [s.status for s in report.statuses] == ["applied"]
            assert version is not None
            assert deployed_model("risk--v1") == (version[0], 2)
            assert _replicas("risk--v1") == {"RUNNING": 2}

            # A version that cannot start (a GPU this machine does not have) is refused
            # for its endpoint at the deadline, deleted; the other endpoint reconciles.
            commit_manifest(
                repo,
                "staging",
                "gpu.yaml",
                endpoint_doc("gpu", "staging", 1, pins=reg, resources={"gpu": 1}),
                "gpu endpoint",
            )
            doc = endpoint_doc(
                "risk", "staging", 1, pins=reg, limits={"max_batch_rows": 2}, replicas={"min": 1}
            )
            commit_manifest(repo, "staging", "risk.yaml", doc, "one replica again")
            report = rec.once()
            statuses = {s.endpoint: s for s in report.statuses}
            assert statuses["gpu"].status == "refused"
            assert statuses["gpu"].rule == "replica_start"
            assert statuses["risk"].status == "applied"
            # deleted: its replica (never placed) stops in the background
            gpu_app = serve.status().applications.get("gpu--v1")
            assert gpu_app is None or gpu_app.status == "DELETING"
            assert deployed_model("risk--v1") == (version[0], 1)
            assert client.post(url, json=_infer_body(model_dir, 2)).status_code == 200
            r = client.post(url.replace("/risk/", "/gpu/"), json=_infer_body(model_dir, 1))
            assert r.status_code == 404
    finally:
        target.shutdown()
