"""The golden path of the registry through the `paved` CLI, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.digests import manifest_for
from tests.conftest import write_model_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAVED = [sys.executable, "-m", "cli.main"]


def paved(home: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAVED_HOME": str(home), "PAVED_ACTOR": "carol", "PAVED_TEAM": "risk"}
    env.pop("PAVED_REGISTRY_URI", None)
    env.update(env_vars)
    return subprocess.run(
        [*PAVED, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def snapshot(home: Path) -> dict[str, Any]:
    """Everything a command could have written: the content of every file and directory
    under the home (in-flight downloads aside), and every row of every database table."""
    files: dict[str, str | None] = {}
    for p in sorted(home.rglob("*")):
        rel = p.relative_to(home)
        if ".staging" in rel.parts or p.name.startswith("registry.db"):
            continue
        files[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    db = sqlite3.connect(f"file:{home / 'registry.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        db.close()
    return {"files": files, "rows": rows}


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
        (["models", "register", "m2", "--run", "../../etc"], "run_id_format"),
        (["models", "register", "m2", "--run", "x" * 100_000], "run_id_format"),
        (["models", "register", "m2", "--source", f"runs:/{'a' * 32}/other"], "source_runs_path"),
        (["models", "register", "m2", "--source", "s3://" + "x" * 100_000], "max_length"),
        (["models", "register", "m2", "--path", "/nonexistent"], "model_dir"),
        (["models", "register", "m2", "--path", "/tmp", "--task", "anything I like"], "task"),
        (["models", "register", "m2", "--path", "/tmp", "--framework", "keras"], "framework"),
        (["models", "train", "credit-risk", "--seed", str(2**70)], "seed_range"),
        (["models", "show", "credit-risk/" + "9" * 100_000], "max_length"),
        (["models", "history", "a\x1b]0;owned\x07b"], "no_control"),
        (
            ["models", "alias", "set", "credit-risk", "challenger", "1", "--reason", "\x1b[2J"],
            "no_control",
        ),
        (
            ["models", "alias", "set", "credit-risk", "challenger", "1", "--reason", "x" * 2000],
            "max_length",
        ),
    ],
)
def test_bad_input_exits_nonzero_names_the_rule_and_writes_nothing(
    home: Path, args: list[str], rule: str
) -> None:
    before = snapshot(home)
    r = paved(home, *args)
    _assert_refused(r, rule)
    assert snapshot(home) == before
    versions = json.loads(paved(home, "models", "list", "credit-risk", "--format", "json").stdout)
    assert [v["version"] for v in versions] == [1]


def _assert_refused(r: subprocess.CompletedProcess[str], rule: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert f"rule: {rule}" in " ".join(r.stderr.split()), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert len(r.stderr) < 2500, "an error quotes a bounded prefix of the value"
    assert "\x1b" not in r.stderr


def _fifo(d: Path) -> None:
    os.mkfifo(d / "weights.safetensors")


def _deep_config(d: Path) -> None:
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)


MODEL_DIRS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "remote_code": (
        lambda d: (d / "config.json").write_text('{"auto_map": {"AutoModel": "x.Y"}}'),
        "no_remote_code",
    ),
    "fifo": (_fifo, "regular_files"),
    "pickle_as_dat": (
        lambda d: (d / "weights.dat").write_bytes(pickle.dumps({"w": 1}, protocol=0)),
        "file_format",
    ),
    "pickle_as_txt": (
        lambda d: (d / "vocab.txt").write_bytes(pickle.dumps({"w": 1}, protocol=0)),
        "no_pickle",
    ),
    "pyw": (lambda d: (d / "evil.pyw").write_text("import os"), "no_code"),
    "deep_json": (_deep_config, "json_depth"),
}


@pytest.mark.parametrize("case", sorted(MODEL_DIRS))
def test_a_refused_model_directory_leaves_no_run_artifact_tag_or_row(
    home: Path, tmp_path: Path, case: str
) -> None:
    build, rule = MODEL_DIRS[case]
    d = write_model_dir(tmp_path / "m")
    build(d)
    before = snapshot(home)
    r = paved(home, "models", "register", "credit-risk", "--path", str(d))
    _assert_refused(r, rule)
    assert snapshot(home) == before


@pytest.mark.parametrize(
    "args",
    [
        ["models", "register", "credit-risk", "--path", "{dir}"],
        ["models", "train", "credit-risk", "--register", "credit-risk"],
    ],
    ids=["register", "train"],
)
def test_a_version_from_another_team_is_refused_before_anything_is_written(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    d = write_model_dir(tmp_path / "m")
    before = snapshot(home)
    r = paved(home, *(a.format(dir=d) for a in args), PAVED_TEAM="fraud")
    _assert_refused(r, "model_owner")
    assert snapshot(home) == before
