"""The MLflow UI (a real `mlflow server`) shows what Pavedpath registered."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from paved.schemas import Actor, Role
from registry.schemas import ModelPackage
from registry.service import Registry
from tests.conftest import make_settings, write_model_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry]]:
    settings = make_settings(tmp_path_factory.mktemp("ui"), "sqlite")
    reg = Registry.from_settings(settings)
    actor = Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}))
    d = write_model_dir(tmp_path_factory.mktemp("ui-model"))
    pkg = ModelPackage(
        model_dir=d,
        team="risk",
        task="tabular-classification",
        framework="torch",
        git_commit="abc123",
        dataset_digest="sha256:feed",
        dataset_description="d",
        metrics={"auc": 0.9},
    )
    reg.register_run(
        "ui-model", reg.log_package(pkg, experiment="paved/ui", actor=actor), actor=actor
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            "--default-artifact-root",
            settings.artifact_location,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 90 s")
        yield base, reg
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ui_serves_the_registered_version_with_pavedpath_lineage(ui) -> None:
    base, reg = ui
    page = httpx.get(base + "/", timeout=10)
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    r = httpx.get(
        f"{base}/api/2.0/mlflow/model-versions/get",
        params={"name": "ui-model", "version": "1"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    mv = r.json()["model_version"]
    tags = {t["key"]: t["value"] for t in mv["tags"]}
    info = reg.get("ui-model/1")
    assert tags["paved.digest"] == info.digest
    assert tags["paved.team"] == "risk"
    assert tags["paved.git_commit"] == "abc123"
    assert "Owner team" in mv["description"]
    run = httpx.get(
        f"{base}/api/2.0/mlflow/runs/get", params={"run_id": mv["run_id"]}, timeout=10
    ).json()["run"]
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["auc"] == pytest.approx(0.9)
