"""Team policies, the exported JSON Schemas, the gate adapters, trailers, and the champion."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from paved.errors import InvalidInput, InvalidName, PermissionDenied, Unauthenticated
from paved.manifest import Endpoint
from paved.schemas import Role
from paved.team import Team, load_team, team_from_yaml
from pipelines.gitops import trailers as t
from pipelines.gitops.schemas import schema_documents, write_schemas
from pipelines.promotion import (
    PROMOTION_ACTOR,
    GateRequest,
    PromotionPolicy,
    evaluation_gate,
    finalize_champion,
    run_gate,
    skip_gate,
)
from tests.unit.pipelines.gitops_fakes import ALICE, FakeCatalog, actor, local

pytestmark = pytest.mark.unit

TEAM = """
apiVersion: pavedpath/v1
kind: Team
metadata: {name: risk}
spec:
  budget: {amount_usd: 250, window: 24h}
  gpu_quota: 2
  endpoints: [chat]
"""


def test_team_policy_validates_and_refuses_unknown_fields(tmp_path: Path) -> None:
    team = team_from_yaml(TEAM, source="t")
    assert team.spec.budget is not None
    assert (team.spec.budget.amount_usd, team.spec.budget.window_s) == (250, 86400)
    assert team.may_call("chat")
    assert not team.may_call("risk")
    for bad, where in [
        (TEAM.replace("gpu_quota", "gpu_qouta"), "spec.gpu_qouta"),
        (TEAM.replace("24h", "1 day"), "spec.budget.window"),
        (TEAM.replace("250", "-1"), "spec.budget.amount_usd"),
        (TEAM.replace("[chat]", "[chat, chat]"), "spec.endpoints"),
        (TEAM.replace("kind: Team", "kind: Endpoint"), "kind"),
    ]:
        with pytest.raises(InvalidInput) as info:
            team_from_yaml(bad, source="teams/risk.yaml")
        assert info.value.rule == "team_schema"
        assert f"teams/risk.yaml: {where}" in info.value.message
    with pytest.raises(InvalidName) as named:  # names are checked by paved.names
        team_from_yaml(TEAM.replace("[chat]", "[../x]"), source="x")
    assert named.value.rule == "no_path_traversal"
    with pytest.raises(InvalidInput) as info:
        team_from_yaml("a: [", source="x")
    assert info.value.rule == "team_yaml"
    (tmp_path / "ops.yaml").write_text(TEAM)
    with pytest.raises(InvalidInput) as info:
        load_team(tmp_path / "ops.yaml")
    assert info.value.rule == "team_path"
    (tmp_path / "risk.yaml").write_text(TEAM)
    assert load_team(tmp_path / "risk.yaml") == team


def test_schemas_are_written_and_validate_the_documents(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    paths = write_schemas(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["endpoint.schema.json", "team.schema.json"]
    assert schema_documents() == {p.name: p.read_text() for p in paths}  # stable bytes
    team_schema = json.loads((tmp_path / "out/team.schema.json").read_text())
    endpoint_schema = json.loads((tmp_path / "out/endpoint.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(TEAM), team_schema)
    doc = {
        "apiVersion": "pavedpath/v1",
        "kind": "Endpoint",
        "metadata": {"name": "risk", "env": "prod", "team": "risk"},
        "spec": {
            "model": "credit-risk",
            "champion": {"version": 3},
            "challenger": {"version": 4, "steps": [5, 100]},
        },
    }
    Endpoint.model_validate(doc)
    jsonschema.validate(doc, endpoint_schema)
    doc["spec"]["replicaz"] = 2  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, endpoint_schema)
    assert Team.model_json_schema()["additionalProperties"] is False


def test_trailer_values_cannot_break_the_block() -> None:
    message = t.compose("s" * 200, ["body"], {t.GATE: "ok\nPaved-Actor: root", t.MODE: None})
    lines = message.splitlines()
    assert len(lines[0]) == 120
    assert lines[-1] == "Paved-Gate: ok Paved-Actor: root"
    assert "Paved-Mode" not in message
    assert len(t.one_line("x" * 1000)) == t.MAX_VALUE


def request(**kw: Any) -> GateRequest:
    base: dict[str, Any] = dict(
        model="credit-risk",
        candidate_version=2,
        champion_version=1,
        endpoint="risk",
        env="staging",
        mode="champion",
        manifest=None,
        actor="alice",
    )
    return GateRequest(**(base | kw))


def test_skipping_the_gate_needs_admin_and_is_recorded() -> None:
    with pytest.raises(PermissionDenied) as info:
        skip_gate(ALICE)
    assert "'admin'" in info.value.message
    root = actor("root", Role.ADMIN)
    outcome = run_gate(skip_gate(root), request())
    assert outcome is not None
    assert outcome.summary == f"skipped by {root.identity} (admin)"
    # A name from the environment never skips a gate, whatever roles it claims.
    with pytest.raises(Unauthenticated) as anon:
        skip_gate(local("root", Role.ADMIN))
    assert anon.value.rule == "api_key_required"
    assert run_gate(None, request()) is None


def test_evaluation_gate_absent_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evaluation.gates", None)  # import raises ModuleNotFound
    assert evaluation_gate(object(), ALICE) is None


def test_evaluation_gate_adapts_gate_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    class Rule:
        def __init__(self, rule: str, passed: bool) -> None:
            self.rule, self.passed = rule, passed

        def model_dump(self, mode: str) -> dict[str, Any]:
            return {"rule": self.rule, "passed": self.passed}

    class Result:
        passed = False
        rules = [Rule("digest verified", True), Rule("auc vs champion", False)]

        def summary(self) -> str:
            return "gate failed for credit-risk/2: auc fell 0.04 below the champion's 0.81"

    def gate_version(registry: object, candidate: str, against: str, *, actor: object) -> Any:
        calls.append((candidate, against))
        return types.SimpleNamespace(gate=Result())

    gates = types.ModuleType("evaluation.gates")
    gates.evaluate_gate = lambda *a, **k: None  # type: ignore[attr-defined]
    offline = types.ModuleType("evaluation.offline")
    offline.gate_version = gate_version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "evaluation.gates", gates)
    monkeypatch.setitem(sys.modules, "evaluation.offline", offline)

    gate = evaluation_gate(object(), ALICE)
    assert gate is not None
    with pytest.raises(InvalidInput) as info:
        run_gate(gate, request())
    assert "rule auc vs champion" in info.value.message
    assert "0.04" in info.value.message
    gate(request(champion_version=None))
    assert calls == [("credit-risk/2", "credit-risk/1"), ("credit-risk/2", "credit-risk@champion")]


def endpoint(env: str, version: int) -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": "risk", "env": env, "team": "risk"},
            "spec": {"model": "credit-risk", "champion": {"version": version}},
        }
    )


def test_finalize_champion_moves_the_alias_for_production_only() -> None:
    catalog = FakeCatalog()
    sha = "a" * 40
    assert finalize_champion(catalog, endpoint("staging", 2), commit=sha) is None
    event = finalize_champion(catalog, endpoint("prod", 2), commit=sha)
    assert event is not None
    assert (event.to_version, event.actor) == (2, PROMOTION_ACTOR.identity)
    assert sha in event.reason
    assert "prod/risk" in event.reason
    assert finalize_champion(catalog, endpoint("prod", 2), commit=sha) is None  # already there
    policy = PromotionPolicy(champion_alias_envs=frozenset({"staging"}))
    assert finalize_champion(catalog, endpoint("staging", 3), commit=sha, policy=policy)
    assert [m.to_version for m in catalog.moves] == [2, 3]
    with pytest.raises(InvalidInput):
        finalize_champion(catalog, endpoint("prod", 1), commit="HEAD; rm -rf /")
