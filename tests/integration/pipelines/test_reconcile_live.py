"""A version switch on the real stack (Ray Serve, gateway, registry, Git) under a steady
client loop: every request must succeed, and traffic must end on the new version."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bundled.credit_risk.data import generate
from bundled.credit_risk.model import load
from paved.schemas import Role
from pipelines.gitops.source import GitSource
from pipelines.reconciler import Reconciler, StateStore
from serving.deploy import RayServeTarget
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


def _infer_body(model_dir: Path) -> dict[str, object]:
    frame = generate(100, seed=5)
    inputs = []
    for spec in load(model_dir).input_schema():
        value = frame.columns[spec.name][0]
        value = value.item() if hasattr(value, "item") else value
        inputs.append({"name": spec.name, "shape": [1], "datatype": spec.datatype, "data": [value]})
    return {"inputs": inputs}


def test_version_switch_under_load_fails_no_request(tmp_path: Path) -> None:
    settings, reg = registry_with_versions(tmp_path / "home", versions=2)
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
    body = _infer_body(reg.fetch("credit-risk/1"))
    outcomes: Counter[str] = Counter()
    versions: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        url = f"http://127.0.0.1:{port}/v2/models/risk/infer"
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.post(url, json=body)
                    outcomes[str(r.status_code)] += 1
                    versions.append(r.headers.get("x-paved-model-version", "?"))
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

    def wait_for(what: str, done: Callable[[], bool]) -> None:
        # Progress is counted in requests, not seconds: no assertion rests on timing.
        deadline = time.monotonic() + 120
        while not done():
            assert loop.is_alive(), f"the client stopped before {what}"
            assert time.monotonic() < deadline, f"never {what}: {outcomes}"
            time.sleep(0.05)

    loop = threading.Thread(target=client_loop)
    try:
        rec.once()
        loop.start()
        wait_for("served v1 under load", lambda: len(versions) >= 20)
        commit_manifest(
            repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 2, pins=reg), "v2"
        )
        report = rec.once()
        switched = len(versions)
        wait_for("served v2 after the switch", lambda: len(versions) >= switched + 20)
        stop.set()
        loop.join(timeout=60)
    finally:
        stop.set()
        target.shutdown()
    assert [s.status for s in report.statuses] == ["applied"]
    assert set(outcomes) == {"200"}, outcomes  # zero failed requests, counted
    assert versions[:20] == ["1"] * 20
    # Once the pass returned, the routes were swapped: every later answer is v2.
    assert set(versions[switched + 1 :]) == {"2"}, versions[switched - 5 :]
