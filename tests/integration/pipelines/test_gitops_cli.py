"""`paved gitops init`, `promote`, `approve`, `rollback`, `gitops log` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paved.schemas import Actor, Role
from paved.settings import Settings
from registry.schemas import ModelPackage
from registry.service import Registry
from serving.keys import KeyStore
from tests.conftest import write_model_dir
from tests.unit.pipelines.gitops_fakes import git

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAVED = [sys.executable, "-m", "cli.main"]


class Cli:
    def __init__(self, home: Path, keys: dict[str, str]) -> None:
        self.home, self.keys = home, keys
        self.gitops = home / "gitops"

    def __call__(
        self, *args: str, key: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PAVED_HOME": str(self.home),
            "PAVED_ACTOR": "carol",
            "PAVED_TEAM": "risk",
            "COLUMNS": "200",
            **(env or {}),
        }
        env.pop("PAVED_REGISTRY_URI", None)
        env.pop("PAVED_API_KEY", None)
        if key is not None:
            env["PAVED_API_KEY"] = self.keys.get(key, key)
        return subprocess.run(
            [*PAVED, *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )


def mint_keys(settings: Settings) -> dict[str, str]:
    """The bootstrap admin (held by ops) and keys it mints: a second admin (dana), an
    engineer (alice), an approver (bob) and a viewer, all of team risk."""
    store = KeyStore(settings.tracking_uri)
    keys: dict[str, str] = {}
    try:
        keys["root"], root = store.bootstrap(team="platform", holder="ops")
        for name, role, holder in (
            ("admin", Role.ADMIN, "dana"),
            ("engineer", Role.ML_ENGINEER, "alice"),
            ("approver", Role.APPROVER, "bob"),
            ("viewer", Role.VIEWER, "vic"),
        ):
            keys[name] = store.mint(by=root, team="risk", roles=frozenset({role}), holder=holder)[0]
    finally:
        store.dispose()
    return keys


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A PAVED_HOME with credit-risk versions 1 and 2 and keys for four roles."""
    root = tmp_path_factory.mktemp("gitops-cli")
    settings = Settings(home=root / "home", actor="carol")
    reg = Registry.from_settings(settings)
    carol = Actor(identity="carol", roles=frozenset({Role.ML_ENGINEER}), team="risk")
    for seed in (0, 1):
        package = ModelPackage(
            model_dir=write_model_dir(root / f"m{seed}", seed=seed),
            team="risk",
            task="tabular-classification",
            framework="torch",
            git_commit="0" * 40,
            dataset_digest="sha256:" + "1" * 64,
            dataset_description="test data",
        )
        reg.register_run(
            "credit-risk", reg.log_package(package, experiment="t", actor=carol), actor=carol
        )
    return Cli(settings.home, mint_keys(settings))


def refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    for needle in needles:
        assert needle in " ".join(r.stderr.split()), r.stderr


def test_promote_approve_rollback_end_to_end(cli: Cli, tmp_path: Path) -> None:
    r = cli("gitops", "init")
    assert r.returncode == 0, r.stderr
    assert (cli.gitops / "schemas" / "endpoint.schema.json").is_file()
    head = git(cli.gitops, "rev-parse", "main")

    # The local user is an ML engineer and no identity: skipping the gate needs an admin key.
    refused(
        cli("promote", "credit-risk", "1", "--endpoint", "risk", "--env", "staging", "--skip-gate"),
        "'admin'",
        "api_key_required",
    )
    refused(
        cli(
            "promote",
            "credit-risk",
            "1",
            "--endpoint",
            "risk",
            "--env",
            "staging",
            "--skip-gate",
            key="viewer",
        ),
        "'admin'",
    )
    refused(
        cli(
            "promote",
            "credit-risk",
            "1",
            "--endpoint",
            "risk",
            "--env",
            "staging",
            "--canary",
            "5,x",
        ),
        "canary_steps",
    )
    refused(
        cli(
            "promote",
            "credit-risk",
            "1",
            "--endpoint",
            "risk",
            "--env",
            "staging",
            key="pp-0000000000000000.bad",
        ),
        "unauthenticated",
    )
    assert git(cli.gitops, "rev-parse", "main") == head

    staging = ["--endpoint", "risk", "--env", "staging", "--skip-gate"]
    r = cli("promote", "credit-risk", "1", *staging, key="admin")
    assert r.returncode == 0, r.stderr
    r = cli(
        "promote",
        "credit-risk",
        "2",
        *staging,
        "--canary",
        "5,25,50,100",
        "-o",
        "json",
        key="admin",
    )
    assert r.returncode == 0, r.stderr
    canary = json.loads(r.stdout)
    assert (canary["state"], canary["mode"], canary["from_version"]) == ("applied", "canary", 1)
    admin_id = canary["actor"]
    assert admin_id.startswith("key:")
    body = git(cli.gitops, "log", "-1", "--format=%B")
    for trailer in (
        f"Paved-Actor: {admin_id}",
        "Paved-From-Version: 1",
        "Paved-To-Version: 2",
        f"Paved-Promotion-Id: {canary['id']}",
        "Paved-Gate: passed: skipped by",
    ):
        assert trailer in body

    prod = ["credit-risk", "1", "--endpoint", "risk", "--env", "prod", "--skip-gate"]
    head = git(cli.gitops, "rev-parse", "main")
    # Production needs a key: the local user (a name from the environment) is refused,
    # with or without the gate.
    refused(cli("promote", *prod[:-1]), "api_key_required")
    refused(cli("promote", *prod), "api_key_required")
    assert git(cli.gitops, "for-each-ref", "refs/heads/promotion") == ""
    assert git(cli.gitops, "rev-parse", "main") == head
    r = cli("promote", *prod, "-o", "json", key="admin")
    assert r.returncode == 0, r.stderr
    pending = json.loads(r.stdout)
    assert pending["state"] == "pending"
    assert not (cli.gitops / "environments" / "prod").exists()
    r = cli("gitops", "pending", "-o", "json")
    assert [p["id"] for p in json.loads(r.stdout)] == [pending["id"]]

    refused(cli("approve", pending["id"], key="admin"), "different identity", "four_eyes")
    # The bootstrap admin minted dana's key, so it could have minted it for itself.
    refused(cli("approve", pending["id"], key="root"), "minted the promoter's key", "four_eyes")
    refused(cli("approve", pending["id"], key="viewer"), "'approver'")
    refused(cli("approve", pending["id"]), "'approver'")  # carol: ml-engineer only
    r = cli("approve", pending["id"], env={"PAVED_ACTOR": "bob"})  # a name is not bob
    refused(r, "'approver'")
    r = cli("approve", pending["id"], key="approver")
    assert r.returncode == 0, r.stderr
    assert (cli.gitops / "environments" / "prod" / "risk.yaml").is_file()
    assert "Paved-Action: approve" in git(cli.gitops, "log", "-1", "--format=%B")

    refused(cli("rollback", "risk", "--env", "prod"), "api_key_required")
    r = cli("rollback", "risk", "--env", "staging")
    assert r.returncode == 0, r.stderr
    assert "reverted" in r.stdout
    manifest = (cli.gitops / "environments" / "staging" / "risk.yaml").read_text()
    assert "challenger" not in manifest
    refused(cli("rollback", "risk", "--env", "staging"), "rollback_of_rollback")

    r = cli("gitops", "log", "risk", "--env", "staging", "-o", "json")
    assert r.returncode == 0, r.stderr
    changes = json.loads(r.stdout)
    assert [c["trailers"]["Paved-Action"] for c in changes] == ["rollback", "promote", "promote"]
    assert [c["manifest"]["spec"]["champion"]["version"] for c in changes] == [1, 1, 1]
    r = cli("gitops", "log", "risk", "--env", "prod", "--at", "2000-01-01T00:00:00Z")
    assert "nothing was declared" in r.stdout

    r = cli("gitops", "schema", "--out", str(tmp_path / "schemas"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == [
        "endpoint.schema.json",
        "team.schema.json",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """credit-risk versions 1 and 2 trained for real (seconds on the CPU), so the
    evaluation gate has real models to evaluate."""
    from pipelines.train import train_and_log

    root = tmp_path_factory.mktemp("gitops-gate")
    settings = Settings(home=root / "home", actor="carol")
    reg = Registry.from_settings(settings)
    carol = Actor(identity="carol", roles=frozenset({Role.ML_ENGINEER}), team="risk")
    for seed in (0, 1):
        train_and_log(
            "credit-risk",
            registry=reg,
            work_dir=settings.work_dir,
            actor=carol,
            team="risk",
            seed=seed,
            register_as="credit-risk",
        )
    return Cli(settings.home, mint_keys(settings))


def test_promotions_run_the_evaluation_gate(trained: Cli) -> None:
    """Without --skip-gate the CLI runs the real evaluation gate (evaluation.gates):
    the candidate is evaluated on its verified files and the verdict is in the commit."""
    assert trained("gitops", "init").returncode == 0
    r = trained(
        "promote", "credit-risk", "1", "--endpoint", "risk", "--env", "staging", "-o", "json"
    )
    assert r.returncode == 0, r.stderr
    staged = json.loads(r.stdout)
    assert staged["gate"].startswith("passed: ")
    assert "skipped" not in staged["gate"]
    assert "credit-risk/1 against no champion" in staged["gate"]
    assert f"Paved-Gate: {staged['gate']}" in git(trained.gitops, "log", "-1", "--format=%B")
    # The next one is judged against the endpoint's champion, evaluated alike.
    r = trained(
        "promote", "credit-risk", "2", "--endpoint", "risk", "--env", "staging", "-o", "json"
    )
    assert r.returncode == 0, r.stderr
    assert "credit-risk/2 against credit-risk/1" in json.loads(r.stdout)["gate"]

    # Production: an engineer's key runs the gate; an independent approver merges it.
    r = trained(
        "promote",
        "credit-risk",
        "2",
        "--endpoint",
        "risk",
        "--env",
        "prod",
        "-o",
        "json",
        key="engineer",
    )
    assert r.returncode == 0, r.stderr
    pending = json.loads(r.stdout)
    assert pending["state"] == "pending"
    assert pending["gate"].startswith("passed: ")
    assert "skipped" not in pending["gate"]
    r = trained("approve", pending["id"], "-o", "json", key="approver")
    assert r.returncode == 0, r.stderr
    approval = json.loads(r.stdout)
    assert approval["promoted_by"] == pending["actor"]
    assert approval["approved_by"] != pending["actor"]
    assert approval["approved_by"].startswith("key:")
    manifest = (trained.gitops / "environments" / "prod" / "risk.yaml").read_text()
    assert "version: 2" in manifest
