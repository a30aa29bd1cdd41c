"""The golden path of the registry through the `paved` CLI, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.digests import manifest_for
from tests.conftest import write_model_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAVED = [sys.executable, "-m", "paved.cli.main"]


def paved(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAVED_HOME": str(home), "PAVED_ACTOR": "carol", "PAVED_TEAM": "risk"}
    env.pop("PAVED_REGISTRY_URI", None)
    return subprocess.run(
        [*PAVED, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def snapshot(home: Path) -> dict[str, int]:
    return {
        str(p.relative_to(home)): p.stat().st_size
        for p in home.rglob("*")
        if p.is_file() and p.name != "registry.db" and ".staging" not in p.parts
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli") / "paved"
    r = paved(home, "models", "train", "credit-risk", "--register", "credit-risk", "--seed", "7")
    assert r.returncode == 0, r.stderr
    assert "registered credit-risk/1" in r.stdout
    return home


def test_show_gives_lineage_and_digests(home: Path) -> None:
    r = paved(home, "models", "show", "credit-risk/1", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["lineage"]["team"] == "risk"
    assert d["lineage"]["registered_by"] == "carol"
    assert d["lineage"]["framework"] == "torch"
    assert d["lineage"]["task"] == "tabular-classification"
    assert d["lineage"]["dataset_digest"].startswith("sha256:")
    assert len(d["lineage"]["git_commit"]) >= 7
    assert float(d["metrics"]["auc"]) > 0.7
    assert d["params"]["seed"] == "7"
    # The digests shown are the digests of the stored files.
    stored = Path(d["source"].removeprefix("file://"))
    assert manifest_for(stored).files == d["manifest"]["files"]
    assert set(d["manifest"]["files"]) == {"config.json", "model.safetensors"}

    table = paved(home, "models", "show", "credit-risk/1")
    assert table.returncode == 0
    for needle in ("owner team", "git commit", "dataset digest", "model.safetensors", "auc"):
        assert needle in table.stdout


def test_list_and_history(home: Path) -> None:
    r = paved(home, "models", "list", "--format", "json")
    assert [m["name"] for m in json.loads(r.stdout)] == ["credit-risk"]
    r = paved(home, "models", "alias", "set", "credit-risk", "challenger", "1", "--reason", "e2e")
    assert r.returncode == 0, r.stderr
    r = paved(home, "models", "history", "credit-risk", "--format", "json")
    events = [(e["event"], e["alias"], e["version"], e["actor"]) for e in json.loads(r.stdout)]
    assert events == [("registered", None, 1, "carol"), ("alias_set", "challenger", 1, "carol")]


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (["models", "train", "credit-risk", "--register", "../escape"], "no_path_traversal"),
        (["models", "train", "credit-risk", "--register", "%252e%252e%252f"], "no_path_traversal"),
        (["models", "train", "credit-risk", "--register", "a\\b"], "no_path_traversal"),
        (["models", "train", "credit-risk", "--register", "x" * 200], "max_length"),
        (["models", "train", "gpt-5"], "model_kind"),
        (["models", "show", "credit-risk/..%2f..%2fetc"], "no_path_traversal"),
        (["models", "show", "credit-risk/0"], "version_range"),
        (["models", "show", "credit-risk@Champion"], "alias_charset"),
        (["models", "register", "m2", "--source", "file:///etc/passwd"], "source_local_path"),
        (["models", "register", "m2", "--source", "/etc"], "source_local_path"),
        (
            ["models", "register", "m2", "--source", "http://169.254.169.254/x"],
            "source_internal_host",
        ),
        (["models", "register", "m2", "--source", "s3://bucket/x"], "source_scheme"),
        (["models", "alias", "set", "credit-risk", "champion", "1"], "protected_alias"),
        (["models", "alias", "set", "credit-risk", "v1", "1"], "alias_reserved"),
    ],
)
def test_bad_input_exits_nonzero_names_the_rule_and_writes_nothing(
    home: Path, args: list[str], rule: str
) -> None:
    before = snapshot(home)
    r = paved(home, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"rule: {rule}" in " ".join(r.stderr.split())
    assert snapshot(home) == before
    versions = json.loads(paved(home, "models", "list", "credit-risk", "--format", "json").stdout)
    assert [v["version"] for v in versions] == [1]


def test_remote_code_dir_is_refused(home: Path, tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m", extra={"config.json": '{"auto_map": {"AutoModel": "x.Y"}}'})
    before = snapshot(home)
    r = paved(home, "models", "register", "remote", "--path", str(d))
    assert r.returncode == 2
    assert "rule: no_remote_code" in " ".join(r.stderr.split())
    assert snapshot(home) == before
