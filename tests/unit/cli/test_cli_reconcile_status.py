"""`paved reconcile --status`: what the last pass of the control loop did, from the files
the loop writes (no cluster needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.reconciler import AppliedState, PassRecord, StateStore

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _status(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["reconcile", "--status", "--env", "staging", *args],
        env={"PAVED_HOME": str(home)},
        terminal_width=200,
    )
    return result.exit_code, result.output


def test_status_shows_a_failed_pass_with_its_reason_and_exits_1(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "reconciler")
    store.save(AppliedState(env="staging", commit="a" * 40, applied_at=AT))
    store.save_pass(
        PassRecord(
            env="staging",
            at=AT,
            ok=False,
            reason="TimeoutExpired: Command '['git', 'fetch']' timed out after 60 seconds",
            consecutive_failures=3,
            next_pass_in_s=40,
            last_ok_at=AT,
        )
    )
    code, output = _status(tmp_path)
    assert code == 1
    assert "aaaaaaaaaaaa" in output
    assert "FAILED" in output
    assert "3 in a row" in output
    assert "git', 'fetch']' timed out" in output

    code, output = _status(tmp_path, "--format", "json")
    assert code == 1
    body = json.loads(output)
    assert body["applied_commit"] == "a" * 40
    assert body["last_pass"]["ok"] is False
    assert body["last_pass"]["consecutive_failures"] == 3


def test_status_after_a_good_pass_exits_0(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "reconciler")
    store.save_pass(
        PassRecord(
            env="staging",
            at=AT,
            ok=True,
            commit="b" * 40,
            refused=["risk"],
            next_pass_in_s=5,
            last_ok_at=AT,
        )
    )
    code, output = _status(tmp_path)
    assert code == 0, output
    assert "last pass ok" in output
    assert "refused: risk" in output


def test_status_without_any_pass_says_so(tmp_path: Path) -> None:
    code, output = _status(tmp_path)
    assert code == 0, output
    assert "no pass of the control loop recorded" in output
