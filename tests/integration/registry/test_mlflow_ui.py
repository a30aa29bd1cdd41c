"""`paved ui`: a real MLflow server on Pavedpath's store, read-only unless an admin opens it.

The UI shows what Pavedpath registered; every request that could write (setting an
alias, rewriting a digest tag, deleting a model, uploading an artifact) is refused with
403 before it reaches MLflow, and the registry is unchanged afterwards.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from paved.errors import NotFound
from paved.schemas import Actor, Role
from paved.settings import Settings
from registry.schemas import ModelPackage
from registry.service import Registry
from serving.keys import KeyStore
from tests.conftest import make_settings, write_model_dir
from tests.utils.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAVED = [sys.executable, "-m", "cli.main"]


class Ui:
    def __init__(self, settings: Settings, reg: Registry, keys: dict[str, str]) -> None:
        self.settings, self.reg, self.keys = settings, reg, keys

    def env(self, key: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PAVED_HOME": str(self.settings.home), "COLUMNS": "200"}
        env.pop("PAVED_REGISTRY_URI", None)
        env.pop("PAVED_API_KEY", None)
        if key is not None:
            env["PAVED_API_KEY"] = self.keys[key]
        return env

    def start(self, *args: str, key: str | None = None) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = subprocess.Popen(
            [*PAVED, "ui", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(key),
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    return proc, base
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        stop(proc)
        pytest.fail("paved ui did not start within 120 s")


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Ui:
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
    store = KeyStore(settings.tracking_uri)
    try:
        admin_key, admin = store.bootstrap(team="platform", holder="ops")
        viewer_key = store.mint(by=admin, team="risk", roles=frozenset({Role.VIEWER}), holder="v")[
            0
        ]
    finally:
        store.dispose()
    return Ui(settings, reg, {"admin": admin_key, "viewer": viewer_key})


@pytest.fixture(scope="module")
def readonly(ui: Ui) -> Iterator[str]:
    proc, base = ui.start()
    try:
        yield base
    finally:
        stop(proc)


def test_ui_serves_the_registered_version_with_pavedpath_lineage(ui: Ui, readonly: str) -> None:
    base = readonly
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
    info = ui.reg.get("ui-model/1")
    assert tags["paved.digest"] == info.digest
    assert tags["paved.team"] == "risk"
    assert tags["paved.git_commit"] == "abc123"
    assert "Owner team" in mv["description"]
    run = httpx.get(
        f"{base}/api/2.0/mlflow/runs/get", params={"run_id": mv["run_id"]}, timeout=10
    ).json()["run"]
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["auc"] == pytest.approx(0.9)
    # The searches the UI sends as POST are reads and go through.
    for prefix in ("api", "ajax-api"):
        r = httpx.post(
            f"{base}/{prefix}/2.0/mlflow/runs/search",
            json={"experiment_ids": [run["info"]["experiment_id"]]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert [x["info"]["run_id"] for x in r.json()["runs"]] == [mv["run_id"]]
    r = httpx.post(f"{base}/graphql", json={"query": "{ __typename }"}, timeout=10)
    assert r.status_code == 200, r.text


WRITES = [
    (
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        {"name": "ui-model", "alias": "champion", "version": "1"},
    ),
    (
        "POST",
        "/ajax-api/2.0/mlflow/registered-models/alias",
        {"name": "ui-model", "alias": "champion", "version": "1"},
    ),
    (
        "POST",
        "/api/2.0/mlflow/model-versions/set-tag",
        {"name": "ui-model", "version": "1", "key": "paved.digest", "value": "sha256:evil"},
    ),
    (
        "POST",
        "/ajax-api/2.0/mlflow/model-versions/set-tag",
        {"name": "ui-model", "version": "1", "key": "paved.digest", "value": "sha256:evil"},
    ),
    (
        "PATCH",
        "/api/2.0/mlflow/registered-models/update",
        {"name": "ui-model", "description": "rewritten"},
    ),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete", {"name": "ui-model", "version": "1"}),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": "ui-model"}),
    ("POST", "/api/2.0/mlflow/registered-models/create", {"name": "planted"}),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/model.safetensors", None),
    # Variants of an allowed search path do not pass for it.
    (
        "POST",
        "/api/2.0/mlflow/runs/search/../../model-versions/set-tag",
        {"name": "ui-model", "version": "1", "key": "paved.digest", "value": "sha256:evil"},
    ),
    (
        "POST",
        "//api/2.0/mlflow/model-versions/set-tag",
        {"name": "ui-model", "version": "1", "key": "paved.digest", "value": "sha256:evil"},
    ),
    ("POST", "/api/2.0/mlflow/runs/search/", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_writes_are_refused_and_the_registry_is_unchanged(
    ui: Ui, readonly: str, method: str, path: str, body: dict[str, str] | None
) -> None:
    before = ui.reg.describe("ui-model/1")
    # http.client sends the path exactly as written (no dot-segment normalisation).
    conn = http.client.HTTPConnection(readonly.removeprefix("http://"), timeout=10)
    payload = b"weights" if body is None else httpx.Request("POST", "/", json=body).content
    conn.request(method, path, body=payload, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 403, text
    assert "ui_read_only" in text
    after = ui.reg.describe("ui-model/1")
    assert after == before
    with pytest.raises(NotFound):
        ui.reg.get("ui-model@champion")
    assert [m.name for m in ui.reg.list_models()] == ["ui-model"]


def test_allow_writes_needs_an_admin_key_and_says_what_it_bypasses(ui: Ui) -> None:
    for key, rule in ((None, "api_key_required"), ("viewer", "role")):
        r = subprocess.run(
            [*PAVED, "ui", "--port", str(free_port()), "--allow-writes"],
            capture_output=True,
            text=True,
            env=ui.env(key),
            timeout=120,
            check=False,
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"(rule: {rule})" in " ".join(r.stderr.split())
    proc, base = ui.start("--allow-writes", key="admin")
    try:
        w = httpx.post(
            f"{base}/api/2.0/mlflow/registered-models/set-tag",
            json={"name": "ui-model", "key": "note", "value": "written through the UI"},
            timeout=10,
        )
        assert w.status_code == 200, w.text
        got = httpx.get(
            f"{base}/api/2.0/mlflow/registered-models/get", params={"name": "ui-model"}, timeout=10
        ).json()["registered_model"]
        assert {t["key"]: t["value"] for t in got["tags"]}["note"] == "written through the UI"
    finally:
        _, err = stop(proc)
    assert "bypass Pavedpath's roles" in " ".join(err.split())
