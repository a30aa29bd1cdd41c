"""The promotion flow over real Git repositories and a fake registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from paved.errors import Conflict, InvalidInput, InvalidName, NotFound, PermissionDenied
from paved.schemas import Role
from pipelines.gitops import trailers as t
from pipelines.gitops.git import Identity
from pipelines.gitops.layout import endpoint_path
from pipelines.promotion import GateOutcome, GateRequest, PromotionPolicy, Promotions
from tests.unit.pipelines.gitops_fakes import (
    ALICE,
    BOB,
    KEYS,
    VIC,
    FakeCatalog,
    actor,
    digest_of,
    git,
    make_flow,
    make_repo,
    passing_gate,
    state,
)

pytestmark = pytest.mark.unit


def manifest_at(flow: Promotions, env: str, rev: str | None = None) -> dict[str, Any]:
    current = flow.repo.read_endpoint(env, "risk", at=rev)
    assert current is not None
    return current[0]


def test_promote_to_staging_is_one_commit_with_trailers(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    first = flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE, gate=passing_gate)
    assert first.state == "applied"
    assert first.from_version is None
    # A new team gets the default policy in the same commit, so the reconciler knows it.
    changed = git(repo.path, "diff", "--name-only", "HEAD~1", "HEAD").splitlines()
    assert changed == ["environments/staging/risk.yaml", "teams/risk.yaml"]
    [team] = repo.teams()
    assert team.value is not None
    assert team.value.spec.budget is None
    p = flow.promote("credit-risk", "2", "risk", "staging", actor=ALICE, gate=passing_gate)
    assert p.commit == repo.head()
    [c] = repo.git.log("main", max_count=1)
    assert c.subject == "promote credit-risk v2 to staging/risk as champion"
    assert c.author == ALICE.identity
    assert c.trailers == {
        t.ACTION: "promote",
        t.PROMOTION_ID: p.id,
        t.ACTOR: ALICE.identity,
        t.ACTOR_ROLES: "ml-engineer",
        t.MODEL: "credit-risk",
        t.ENDPOINT: "risk",
        t.ENV: "staging",
        t.MODE: "champion",
        t.FROM_VERSION: "1",
        t.TO_VERSION: "2",
        t.GATE: "passed: auc 0.83 >= champion v1",
    }
    assert (
        git(repo.path, "diff", "--name-only", "HEAD~1", "HEAD") == "environments/staging/risk.yaml"
    )
    doc = manifest_at(flow, "staging")
    # The commit pins the version's digest: the reconciler and replicas verify against it.
    assert doc["spec"] == {
        "model": "credit-risk",
        "champion": {"version": 2, "digest": digest_of(2)},
    }
    assert doc["metadata"] == {"name": "risk", "env": "staging", "team": "risk"}
    text = (repo.path / "environments/staging/risk.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../../schemas/endpoint.schema.json")


def test_canary_and_shadow_set_the_challenger(tmp_path: Path) -> None:
    _, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    p = flow.promote("credit-risk", 2, "risk", "staging", actor=ALICE, canary_steps=[10, 50, 100])
    assert p.mode == "canary"
    spec = manifest_at(flow, "staging")["spec"]
    assert spec["champion"] == {"version": 1, "digest": digest_of(1)}
    assert spec["challenger"] == {
        "version": 2,
        "digest": digest_of(2),
        "mode": "canary",
        "steps": [10, 50, 100],
        "weight": 10,
    }
    flow.promote("credit-risk", 3, "risk", "staging", actor=ALICE, shadow=True)
    assert manifest_at(flow, "staging")["spec"]["challenger"] == {
        "version": 3,
        "digest": digest_of(3),
        "mode": "shadow",
    }
    flow.promote("credit-risk", 3, "risk", "staging", actor=ALICE)
    spec = manifest_at(flow, "staging")["spec"]
    assert spec == {"model": "credit-risk", "champion": {"version": 3, "digest": digest_of(3)}}


def test_fields_a_person_wrote_survive_a_promotion(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    doc = manifest_at(flow, "staging")
    doc["spec"]["replicas"] = {"min": 2, "max": 3}
    doc["spec"]["challenger"] = {"version": 3, "interval": "5m", "sticky": True}
    repo.commit_files(
        {endpoint_path("staging", "risk"): yaml.safe_dump(doc)}, message="tune\n", actor=ALICE
    )
    flow.promote("credit-risk", 2, "risk", "staging", actor=ALICE, canary_steps=[5, 100])
    spec = manifest_at(flow, "staging")["spec"]
    assert spec["replicas"] == {"min": 2, "max": 3}
    assert spec["challenger"] == {
        "version": 2,
        "digest": digest_of(2),
        "mode": "canary",
        "steps": [5, 100],
        "weight": 5,
        "interval": "5m",
        "sticky": True,
    }


def test_a_canary_pins_a_champion_an_older_manifest_left_unpinned(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    doc = manifest_at(flow, "staging")
    doc["spec"]["champion"] = {"version": 1}  # written before Git pinned digests
    repo.commit_files(
        {endpoint_path("staging", "risk"): yaml.safe_dump(doc)}, message="old\n", actor=ALICE
    )
    flow.promote("credit-risk", 2, "risk", "staging", actor=ALICE, canary_steps=[5, 100])
    spec = manifest_at(flow, "staging")["spec"]
    assert spec["champion"] == {"version": 1, "digest": digest_of(1)}
    assert spec["challenger"]["digest"] == digest_of(2)


def test_a_refused_gate_writes_nothing_and_names_the_rule(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    before = state(repo)
    seen: list[GateRequest] = []

    def refuse(request: GateRequest) -> GateOutcome:
        seen.append(request)
        return GateOutcome(
            passed=False,
            summary="auc fell 0.04 below the champion's 0.81; the policy allows 0.01",
            rule="auc vs champion",
            details={"d": 0.04},
        )

    with pytest.raises(InvalidInput) as info:
        flow.promote("credit-risk", 2, "risk", "staging", actor=ALICE, gate=refuse)
    assert info.value.rule == "promotion_gate"
    assert "auc vs champion" in info.value.message
    assert "0.04" in info.value.message
    assert info.value.details == {"gate_rule": "auc vs champion", "d": 0.04}
    assert state(repo) == before
    [req] = seen
    assert (req.candidate_version, req.champion_version, req.mode) == (2, 1, "champion")
    assert req.manifest is not None
    assert req.actor == ALICE.identity


def test_a_gate_that_raises_writes_nothing(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    before = state(repo)

    def broken(request: GateRequest) -> GateOutcome:
        raise NotFound("no evaluation recorded")

    with pytest.raises(NotFound):
        flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE, gate=broken)
    assert state(repo) == before


def test_prod_lands_on_a_branch_and_main_waits_for_approval(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    main_before = repo.head()
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE, gate=passing_gate)
    assert p.state == "pending"
    assert p.branch == f"promotion/{p.id}"
    assert repo.head() == main_before
    assert repo.read_endpoint("prod", "risk") is None
    assert repo.read_endpoint("prod", "risk", at=p.branch) is not None
    assert git(repo.path, "branch", "--show-current") == "main"
    assert [x.id for x in flow.pending()] == [p.id]
    [c] = repo.git.log(p.branch, max_count=1)
    assert c.trailers[t.PROMOTION_ID] == p.id
    assert "paved approve" in git(repo.path, "log", "-1", "--format=%b", p.branch)

    with pytest.raises(Conflict) as info:  # one pending promotion per endpoint
        flow.promote("credit-risk", 2, "risk", "prod", actor=ALICE)
    assert info.value.rule == "promotion_pending"

    a = flow.approve(p.id, actor=BOB)
    assert a.commit == repo.head()
    assert (a.approved_by, a.promoted_by, a.to_version) == (BOB.identity, ALICE.identity, 1)
    [merge] = repo.git.log("main", max_count=1)
    assert len(merge.parents) == 2
    assert merge.author == BOB.identity
    assert merge.trailers[t.ACTION] == "approve"
    assert merge.trailers[t.PROMOTED_BY] == ALICE.identity
    assert merge.trailers[t.PROMOTION_ID] == p.id
    assert repo.read_endpoint("prod", "risk") is not None
    assert flow.pending() == []
    assert repo.git.branches("promotion/*") == []
    with pytest.raises(Conflict) as info:
        flow.approve(p.id, actor=BOB)
    assert info.value.rule == "promotion_approved"


def test_approval_by_the_promoter_is_refused_even_for_an_admin(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    root = actor("root", Role.ADMIN)
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=root)
    before = state(repo)
    with pytest.raises(PermissionDenied) as info:
        flow.approve(p.id, actor=root)
    assert info.value.rule == "four_eyes"
    assert "different identity" in info.value.message
    assert state(repo) == before


@pytest.mark.parametrize("who", [VIC, ALICE, actor("app", Role.APP)])
def test_approval_needs_the_approver_role(tmp_path: Path, who) -> None:
    repo, flow, _ = make_flow(tmp_path)
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=actor("carol", Role.ML_ENGINEER))
    before = state(repo)
    with pytest.raises(PermissionDenied) as info:
        flow.approve(p.id, actor=who)
    assert "'approver'" in info.value.message
    assert info.value.rule == "role"
    assert state(repo) == before


@pytest.mark.parametrize(
    ("roles", "env", "outcome"),
    [
        ({Role.ML_ENGINEER}, "staging", "applied"),
        ({Role.ML_ENGINEER}, "prod", "pending"),
        ({Role.ADMIN}, "staging", "applied"),
        ({Role.ADMIN}, "prod", "pending"),
        ({Role.APPROVER}, "staging", "'ml-engineer'"),
        ({Role.APPROVER}, "prod", "'ml-engineer'"),
        ({Role.VIEWER}, "staging", "'ml-engineer'"),
        ({Role.APP}, "dev", "'ml-engineer'"),
        (set(), "staging", "'ml-engineer'"),
        ({Role.PROMOTION}, "staging", "'ml-engineer'"),
    ],
)
def test_role_table_for_promote(tmp_path: Path, roles, env, outcome) -> None:
    repo, flow, _ = make_flow(tmp_path)
    who = actor("someone", *roles)
    if outcome in ("applied", "pending"):
        assert flow.promote("credit-risk", 1, "risk", env, actor=who).state == outcome
        return
    before = state(repo)
    with pytest.raises(PermissionDenied) as info:
        flow.promote("credit-risk", 1, "risk", env, actor=who)
    assert outcome in info.value.message
    assert state(repo) == before


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "rule"),
    [
        (("../etc", 1, "risk", "staging"), {}, InvalidName, "no_path_traversal"),
        (("credit-risk", 0, "risk", "staging"), {}, InvalidName, "version_range"),
        (("credit-risk", "2a", "risk", "staging"), {}, InvalidName, "version_format"),
        (("credit-risk", 9, "risk", "staging"), {}, NotFound, None),
        (("other-model", 1, "risk", "staging"), {}, NotFound, None),
        (("credit-risk", 1, "risk/x", "staging"), {}, InvalidName, "no_path_traversal"),
        (("credit-risk", 1, "risk", "%2e%2e"), {}, InvalidName, "no_path_traversal"),
        (("credit-risk", 1, "risk", "prod env"), {}, InvalidName, "name_charset"),
        (("credit-risk", 1, "risk", ""), {}, InvalidName, "not_empty"),
        (
            ("credit-risk", 2, "risk", "staging"),
            {"canary_steps": [50, 25]},
            InvalidInput,
            "canary_steps",
        ),
        (
            ("credit-risk", 2, "risk", "staging"),
            {"canary_steps": [0, 100]},
            InvalidInput,
            "canary_steps",
        ),
        (
            ("credit-risk", 2, "risk", "staging"),
            {"canary_steps": [5], "shadow": True},
            InvalidInput,
            "canary_or_shadow",
        ),
        (("credit-risk", 1, "risk", "staging"), {}, Conflict, "no_change"),
        (("credit-risk", 2, "fresh", "staging"), {"shadow": True}, InvalidInput, "no_champion"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(tmp_path: Path, args, kwargs, error, rule) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    before = state(repo)
    with pytest.raises(error) as info:
        flow.promote(*args, actor=ALICE, **kwargs)
    if rule:
        assert info.value.rule == rule
    assert state(repo) == before


def test_an_endpoint_serves_one_model(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    catalog = FakeCatalog(versions={"credit-risk": {1}, "fraud": {1}})
    flow = Promotions(repo, catalog)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    with pytest.raises(InvalidInput) as info:
        flow.promote("fraud", 1, "risk", "staging", actor=ALICE)
    assert info.value.rule == "endpoint_model"


def test_approve_refuses_unknown_and_malformed_ids(tmp_path: Path) -> None:
    _, flow, _ = make_flow(tmp_path)
    with pytest.raises(NotFound):
        flow.approve("p-0123abcd", actor=BOB)
    for bad in ("p-0123", "../main", "p-0123abcd; rm", "P-0123ABCD"):
        with pytest.raises(InvalidName):
            flow.approve(bad, actor=BOB)


def test_a_stale_promotion_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    flow = Promotions(
        repo,
        FakeCatalog(),
        policy=PromotionPolicy(protected_envs=frozenset({"prod"})),
        keys=KEYS,
    )
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE)
    # Someone changes the prod manifest on main by hand while the promotion waits.
    doc = {
        "apiVersion": "pavedpath/v1",
        "kind": "Endpoint",
        "metadata": {"name": "risk", "env": "prod", "team": "risk"},
        "spec": {"model": "credit-risk", "champion": {"version": 3}},
    }
    repo.commit_files(
        {endpoint_path("prod", "risk"): yaml.safe_dump(doc)}, message="hand\n", actor=ALICE
    )
    before = state(repo)
    with pytest.raises(Conflict) as info:
        flow.approve(p.id, actor=BOB)
    assert info.value.rule == "promotion_stale"
    assert state(repo) == before


def test_a_tampered_promotion_branch_is_refused(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE)
    tip = repo.head(p.branch)
    assert tip is not None
    assert set(git(repo.path, "diff", "--name-only", "main", p.branch).split()) == {
        "environments/prod/risk.yaml",
        "teams/risk.yaml",
    }
    # Same message and trailers, but the team policy it creates is not the default one.
    message = git(repo.path, "log", "-1", "--format=%B", tip) + "\n"
    mallory = Identity.of("mallory")
    extra = repo.git.commit_tree(
        tip,
        {"teams/risk.yaml": "sneaky: true\n"},
        message=message,
        author=mallory,
        committer=mallory,
        at=repo.clock(),
    )
    git(repo.path, "update-ref", f"refs/heads/{p.branch}", extra)
    before = state(repo)
    with pytest.raises(Conflict) as info:
        flow.approve(p.id, actor=BOB)
    assert info.value.rule == "promotion_tampered"
    assert state(repo) == before
    git(
        repo.path,
        "update-ref",
        f"refs/heads/{p.branch}",
        repo.git.commit_tree(
            tip, {}, message="no trailers\n", author=mallory, committer=mallory, at=repo.clock()
        ),
    )
    with pytest.raises(InvalidInput) as bad:
        flow.approve(p.id, actor=BOB)
    assert bad.value.rule == "promotion_commit"


def test_rollback_is_a_revert_commit_restoring_the_previous_manifest(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    previous = (repo.path / "environments/staging/risk.yaml").read_text()
    p = flow.promote("credit-risk", 2, "risk", "staging", actor=ALICE, canary_steps=[5, 50, 100])
    history = git(repo.path, "rev-list", "main").splitlines()

    r = flow.rollback("risk", "staging", actor=BOB)  # approvers may roll back too
    assert (r.reverted, r.from_version, r.to_version) == (p.commit, 2, 1)
    assert (repo.path / "environments/staging/risk.yaml").read_text() == previous
    assert git(repo.path, "rev-list", "main").splitlines()[1:] == history  # appended only
    [c] = repo.git.log("main", max_count=1)
    assert c.trailers[t.ACTION] == "rollback"
    assert c.trailers[t.REVERTS] == p.commit
    assert c.trailers[t.ACTOR] == BOB.identity
    assert "This reverts" not in git(repo.path, "log", "-1", "--format=%B")

    with pytest.raises(Conflict) as info:
        flow.rollback("risk", "staging", actor=ALICE)
    assert info.value.rule == "rollback_of_rollback"


def test_rollback_of_an_approved_prod_promotion(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    flow.approve(flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE).id, actor=BOB)
    flow.approve(flow.promote("credit-risk", 2, "risk", "prod", actor=ALICE).id, actor=BOB)
    r = flow.rollback("risk", "prod", actor=ALICE)
    assert (r.from_version, r.to_version) == (2, 1)
    current = repo.read_endpoint("prod", "risk")
    assert current is not None
    assert current[1].spec.champion.version == 1


def test_rollback_refusals_write_nothing(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    before = state(repo)
    with pytest.raises(NotFound):
        flow.rollback("risk", "staging", actor=ALICE)
    flow.promote("credit-risk", 1, "risk", "staging", actor=ALICE)
    before = state(repo)
    with pytest.raises(Conflict) as info:  # nothing before the first manifest
        flow.rollback("risk", "staging", actor=ALICE)
    assert info.value.rule == "rollback_first"
    with pytest.raises(PermissionDenied) as denied:
        flow.rollback("risk", "staging", actor=VIC)
    assert "'ml-engineer' or 'approver'" in denied.value.message
    with pytest.raises(InvalidName):
        flow.rollback("../risk", "staging", actor=ALICE)
    assert state(repo) == before


def test_what_was_serving_follows_the_approval_not_the_branch(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)  # one hour per commit from T0
    flow.approve(flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE).id, actor=BOB)
    p2 = flow.promote("credit-risk", 2, "risk", "prod", actor=ALICE)
    written = repo.git.log(p2.branch, max_count=1)[0].committed_at
    assert repo.what_was_serving("risk", "prod", written).manifest.spec.champion.version == 1  # type: ignore[union-attr]
    flow.approve(p2.id, actor=BOB)
    approved = repo.git.log("main", max_count=1)[0].committed_at
    at = repo.what_was_serving("risk", "prod", approved)
    assert at is not None
    assert at.action == "approve"
    assert at.manifest.spec.champion.version == 2  # type: ignore[union-attr]


def test_a_known_team_keeps_its_policy(tmp_path: Path) -> None:
    repo, flow, _ = make_flow(tmp_path)
    policy = "apiVersion: pavedpath/v1\nkind: Team\nmetadata: {name: risk}\nspec: {gpu_quota: 1}\n"
    repo.commit_files({"teams/risk.yaml": policy}, message="risk team\n", actor=ALICE)
    p = flow.promote("credit-risk", 1, "risk", "prod", actor=ALICE)
    assert git(repo.path, "diff", "--name-only", "main", p.branch) == "environments/prod/risk.yaml"
    flow.approve(p.id, actor=BOB)
    assert (repo.path / "teams/risk.yaml").read_text() == policy
