"""`paved keys` as a user runs it: bootstrap once, only an admin key mints and revokes,
and a refused command leaves no table, no row and no file behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

PAVED = [sys.executable, "-m", "cli.main"]


def paved(
    home: Path, *args: str, key: str | None = None, team: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAVED_HOME": str(home), "PAVED_ACTOR": "carol", "COLUMNS": "200"}
    if team is not None:
        env["PAVED_TEAM"] = team
    env.pop("PAVED_REGISTRY_URI", None)
    env.pop("PAVED_API_KEY", None)
    if key is not None:
        env["PAVED_API_KEY"] = key
    return subprocess.run(
        [*PAVED, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def refused(r: subprocess.CompletedProcess[str], rule: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"(rule: {rule})" in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr
    assert "pp-" not in r.stdout  # no key was printed


def key_rows(home: Path) -> list[tuple[str, ...]] | None:
    """The key table's rows, or None when there is no table (or no database)."""
    db = home / "registry.db"
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "paved_api_keys" not in names:
            return None
        return sorted(conn.execute("SELECT * FROM paved_api_keys").fetchall())


def test_refusals_before_any_key_write_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    refused(
        paved(home, "keys", "create", "--team", "../x", "--role", "app", "--holder", "h"),
        "no_path_traversal",
    )
    refused(
        paved(home, "keys", "create", "--team", "risk", "--role", "app", "--holder", "h"),
        "api_key_required",
    )
    refused(
        paved(home, "keys", "create", "--team", "risk", "--role", "root", "--holder", "h"),
        "role_name",
    )
    refused(paved(home, "keys", "revoke", "0123456789abcdef"), "api_key_required")
    refused(paved(home, "keys", "bootstrap", "--holder", "../ops"), "no_path_traversal")
    assert not home.exists()  # not even the data directory
    r = paved(home, "keys", "list")
    assert r.returncode == 0, r.stderr
    assert key_rows(home) is None


def test_bootstrap_then_admins_mint_and_revoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = paved(home, "keys", "bootstrap", "--holder", "ops")
    assert r.returncode == 0, r.stderr
    admin = r.stdout.strip()
    assert admin.startswith("pp-")
    assert "shown only now" in r.stderr
    refused(paved(home, "keys", "bootstrap", "--holder", "mallory"), "bootstrap_done")
    rows = key_rows(home)
    assert rows is not None
    assert len(rows) == 1

    r = paved(
        home, "keys", "create", "--team", "risk", "--role", "approver", "--holder", "bob", key=admin
    )
    assert r.returncode == 0, r.stderr
    approver = r.stdout.strip()
    before = key_rows(home)
    # Only an admin key mints; a bad team is refused before the table is touched.
    refused(
        paved(
            home,
            "keys",
            "create",
            "--team",
            "risk",
            "--role",
            "admin",
            "--holder",
            "bob",
            key=approver,
        ),
        "role",
    )
    refused(
        paved(
            home, "keys", "create", "--team", "../x", "--role", "app", "--holder", "svc", key=admin
        ),
        "no_path_traversal",
    )
    refused(
        paved(
            home,
            "keys",
            "create",
            "--team",
            "risk",
            "--role",
            "app",
            "--holder",
            "svc",
            key="pp-0000000000000000.bad",
        ),
        "api_key",
    )
    assert key_rows(home) == before

    r = paved(home, "keys", "list", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "secret" not in r.stdout
    assert admin.split(".")[1] not in r.stdout
    admin_id, approver_id = admin[3:19], approver[3:19]
    refused(paved(home, "keys", "revoke", admin_id, key=approver), "role")
    refused(paved(home, "keys", "revoke", admin_id, key=admin), "last_admin")
    refused(paved(home, "keys", "revoke", "../etc", key=admin), "key_id")
    r = paved(home, "keys", "revoke", approver_id, key=admin)
    assert r.returncode == 0, r.stderr
    # A revoked key is refused, never treated as the local user.
    r = paved(
        home, "keys", "create", "--team", "risk", "--role", "app", "--holder", "svc", key=approver
    )
    refused(r, "api_key")
    assert "not a valid, active API key" in r.stderr


def test_a_keys_team_owns_what_it_registers(tmp_path: Path) -> None:
    import json

    from tests.conftest import write_model_dir

    home = tmp_path / "home"
    admin = paved(home, "keys", "bootstrap", "--holder", "ops").stdout.strip()
    engineer = paved(
        home,
        "keys",
        "create",
        "--team",
        "risk",
        "--role",
        "ml-engineer",
        "--holder",
        "alice",
        key=admin,
    ).stdout.strip()
    register = [
        "models",
        "register",
        "owned",
        "--task",
        "tabular-classification",
        "--framework",
        "torch",
        "--format",
        "json",
    ]
    d = write_model_dir(tmp_path / "m")
    # PAVED_TEAM says "other"; the key says risk, and the key wins.
    r = paved(home, *register, "--path", str(d), key=engineer, team="other")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lineage"]["team"] == "risk"
    r = paved(home, *register, "--path", str(d), "--team", "other", key=engineer)
    refused(r, "owner_team")
    # Without a key the team is the label the local user chose.
    r = paved(home, *register[:2], "unowned", *register[3:], "--path", str(d), team="other")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lineage"]["team"] == "other"
