"""The promotion flow with the real registry (MLflow on SQLite) and real Git remotes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from paved.errors import NotFound, PermissionDenied
from paved.schemas import Actor, Role
from paved.settings import Settings
from pipelines.gitops import trailers as t
from pipelines.gitops.repo import GitOpsRepo
from pipelines.promotion import PROMOTION_ACTOR, Promotions, finalize_champion
from registry.schemas import ModelPackage
from registry.service import Registry
from tests.conftest import write_model_dir
from tests.unit.pipelines.gitops_fakes import KEYS, StepClock, actor, git, passing_gate, state

pytestmark = [pytest.mark.integration]

MODEL = "credit-risk"
ALICE = Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}), team="risk")
BOB = Actor(identity="bob", roles=frozenset({Role.APPROVER}), team="risk")
# Production needs keys: alice's and bob's, both minted by the bootstrap admin (ops).
ALICE_KEY, BOB_KEY = actor("alice", Role.ML_ENGINEER), actor("bob", Role.APPROVER)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A SQLite registry holding credit-risk versions 1 and 2 (small model dirs)."""
    root = tmp_path_factory.mktemp("promotion-registry")
    reg = Registry.from_settings(Settings(home=root / "home", actor="tester"))
    for seed in (0, 1):
        package = ModelPackage(
            model_dir=write_model_dir(root / f"model-{seed}", seed=seed),
            team="risk",
            task="tabular-classification",
            framework="torch",
            git_commit="0" * 40,
            dataset_digest="sha256:" + "1" * 64,
            dataset_description="test data",
        )
        run = reg.log_package(package, experiment="paved/test", actor=ALICE)
        reg.register_run(MODEL, run, actor=ALICE)
    return reg


def test_promote_to_staging_checks_the_registry_and_commits(
    registry: Registry, tmp_path: Path
) -> None:
    repo = GitOpsRepo.init(tmp_path / "gitops", actor=ALICE, clock=StepClock())
    flow = Promotions(repo, registry)
    before = state(repo)
    with pytest.raises(NotFound):
        flow.promote(MODEL, 9, "risk", "staging", actor=ALICE, gate=passing_gate)
    assert state(repo) == before

    flow.promote(MODEL, 1, "risk", "staging", actor=ALICE, gate=passing_gate)
    p = flow.promote(
        MODEL, 2, "risk", "staging", actor=ALICE, gate=passing_gate, canary_steps=[5, 25, 50, 100]
    )
    [c] = repo.git.log("main", max_count=1)
    assert c.sha == p.commit
    assert (c.trailers[t.FROM_VERSION], c.trailers[t.TO_VERSION], c.trailers[t.MODE]) == (
        "1",
        "2",
        "canary",
    )
    current = repo.read_endpoint("staging", "risk")
    assert current is not None
    ep = current[1]
    assert ep.metadata.team == "risk"  # the model's owner team, from the registry
    assert ep.spec.challenger is not None
    assert (ep.spec.champion.version, ep.spec.challenger.version, ep.spec.challenger.weight) == (
        1,
        2,
        5,
    )
    # Staging does not move the registry's champion.
    assert finalize_champion(registry, ep, commit=p.commit) is None


def test_prod_across_clones_of_a_remote_then_the_champion_follows(
    registry: Registry, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    mine = GitOpsRepo.init(tmp_path / "alice", actor=ALICE, remote=str(remote), clock=StepClock())
    theirs = GitOpsRepo.init(tmp_path / "bob", actor=BOB, remote=str(remote), clock=StepClock())

    p = Promotions(mine, registry, keys=KEYS).promote(MODEL, 1, "risk", "prod", actor=ALICE_KEY)
    assert git(remote, "rev-parse", f"refs/heads/{p.branch}") == p.commit
    bob_flow = Promotions(theirs, registry, keys=KEYS)
    assert [x.id for x in bob_flow.pending()] == [p.id]
    with pytest.raises(PermissionDenied):
        Promotions(mine, registry, keys=KEYS).approve(
            p.id, actor=ALICE_KEY.model_copy(update={"roles": frozenset({Role.APPROVER})})
        )

    a = bob_flow.approve(p.id, actor=BOB_KEY)
    assert git(remote, "rev-parse", "main") == a.commit
    assert (
        subprocess.run(
            [
                "git",
                "-C",
                str(remote),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{p.branch}",
            ],
            check=False,
        ).returncode
        != 0
    )
    with mine.lock():
        mine.sync()
    current = mine.read_endpoint("prod", "risk")
    assert current is not None

    event = finalize_champion(registry, current[1], commit=a.commit)
    assert event is not None
    assert registry.get(f"{MODEL}@champion").version == 1
    [move] = [e for e in registry.history(MODEL) if e.alias == "champion"]
    assert move.actor == PROMOTION_ACTOR.identity
    assert a.commit in move.detail
    assert finalize_champion(registry, current[1], commit=a.commit) is None


def test_rollback_and_what_was_serving(registry: Registry, tmp_path: Path) -> None:
    repo = GitOpsRepo.init(tmp_path / "gitops", actor=ALICE, clock=StepClock())
    flow = Promotions(repo, registry)
    one = flow.promote(MODEL, 1, "risk", "staging", actor=ALICE)
    two = flow.promote(MODEL, 2, "risk", "staging", actor=ALICE)
    back = flow.rollback("risk", "staging", actor=ALICE)
    assert (back.reverted, back.to_version) == (two.commit, 1)

    def at(commit: str) -> int:
        when = repo.git.log(commit, max_count=1)[0].committed_at
        change = repo.what_was_serving("risk", "staging", when)
        assert change is not None
        assert change.manifest is not None
        return change.manifest.spec.champion.version

    assert [at(one.commit), at(two.commit), at(back.commit)] == [1, 2, 1]
