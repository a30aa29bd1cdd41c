"""Four eyes on keys: no sequence of commands lets one person approve their own promotion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from paved.errors import PermissionDenied, Unauthenticated
from paved.schemas import Actor, Role
from pipelines.promotion import Promotions
from tests.unit.pipelines.gitops_fakes import (
    FakeCatalog,
    FakeKeys,
    actor,
    local,
    make_repo,
    passing_gate,
    state,
)

pytestmark = pytest.mark.unit


class World:
    """A key store with the bootstrap admin (held by ops) and a promotion flow over it."""

    def __init__(self, tmp: Path) -> None:
        self.keys = FakeKeys()
        self.root = self.key("ops", Role.ADMIN, minted_by=None)
        self.repo = make_repo(tmp)
        self.flow = Promotions(self.repo, FakeCatalog(), keys=self.keys)

    def key(
        self, name: str, *roles: Role, holder: str | None = None, minted_by: object = "root"
    ) -> Actor:
        minter = self.root.key_id if minted_by == "root" else minted_by
        assert minter is None or isinstance(minter, str)
        return actor(name, *roles, keys=self.keys, minted_by=minter, holder=holder)

    def pending(self, promoter: Actor, endpoint: str = "risk") -> str:
        return self.flow.promote(
            "credit-risk", 1, endpoint, "prod", actor=promoter, gate=passing_gate
        ).id

    def refused(self, pid: str, approver: Actor, rule: str = "four_eyes") -> str:
        before = state(self.repo)
        with pytest.raises(PermissionDenied) as info:
            self.flow.approve(pid, actor=approver)
        assert info.value.rule == rule, info.value.message
        assert state(self.repo) == before  # nothing merged, no branch removed
        return info.value.message


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_independent_keys_approve(w: World) -> None:
    alice, bob = w.key("alice", Role.ML_ENGINEER), w.key("bob", Role.APPROVER)
    a = w.flow.approve(w.pending(alice), actor=bob)
    assert (a.promoted_by, a.approved_by) == (alice.identity, bob.identity)


def test_the_promoters_own_key_is_refused_even_for_an_admin(w: World) -> None:
    pid = w.pending(w.root)
    assert "different identity" in w.refused(pid, w.root)


def test_an_admin_minting_an_approver_key_for_itself_is_refused(w: World) -> None:
    pid = w.pending(w.root)
    # Under another holder name: the approver key was minted by the promoter's key.
    fake = w.key("not-ops", Role.APPROVER)
    assert "minted by the promoter's key" in w.refused(pid, fake)
    # Under its own holder name: same holder.
    same = w.key("ops-approver", Role.APPROVER, holder="ops")
    assert "same holder" in w.refused(pid, same)


def test_a_second_admin_key_in_between_does_not_hide_the_minter(w: World) -> None:
    pid = w.pending(w.root)
    deputy = w.key("deputy", Role.ADMIN)  # minted by root
    approver = w.key("x", Role.APPROVER, minted_by=deputy.key_id)
    assert "directly or through keys it minted" in w.refused(pid, approver)


def test_a_person_holding_an_admin_key_cannot_mint_their_approver(w: World) -> None:
    alice = w.key("alice", Role.ML_ENGINEER)
    alice_admin = w.key("alice-admin", Role.ADMIN, holder="alice")
    zed = w.key("zed", Role.APPROVER, minted_by=alice_admin.key_id)
    pid = w.pending(alice)
    assert "held by the promoter (alice)" in w.refused(pid, zed)


def test_the_minter_of_the_promoters_key_cannot_approve(w: World) -> None:
    bob_admin = w.key("bob-admin", Role.ADMIN, holder="bob")
    eve = w.key("eve", Role.ML_ENGINEER, minted_by=bob_admin.key_id)
    pid = w.pending(eve)
    assert "minted the promoter's key" in w.refused(pid, bob_admin)
    # Nor with another of bob's keys.
    bob = w.key("bob", Role.APPROVER)
    assert "held by the approver (bob)" in w.refused(pid, bob)
    # Someone independent of eve and bob still can.
    carol = w.key("carol", Role.APPROVER)
    assert w.flow.approve(pid, actor=carol).approved_by == carol.identity


def test_keys_without_a_known_holder_or_unknown_keys_cannot_take_part(w: World) -> None:
    old = w.key("legacy", Role.ML_ENGINEER)
    w.keys.add(old.key_id or "", None, w.root.key_id)  # created before holders were recorded
    bob = w.key("bob", Role.APPROVER)
    assert "holder" in w.refused(w.pending(old), bob, "four_eyes_unverifiable")

    stranger = w.key("stranger", Role.ML_ENGINEER)
    pid = w.pending(stranger, "other")
    del w.keys.keys[stranger.key_id or ""]  # a key this key store does not know
    w.refused(pid, bob, "four_eyes_unverifiable")


def test_without_a_key_directory_no_approval_is_verified(w: World) -> None:
    alice, bob = w.key("alice", Role.ML_ENGINEER), w.key("bob", Role.APPROVER)
    pid = w.pending(alice)
    w.flow = Promotions(w.repo, FakeCatalog())
    w.refused(pid, bob, "four_eyes_unverifiable")


@pytest.mark.parametrize(
    "action",
    ["promote prod", "approve", "rollback prod"],
)
def test_production_needs_a_key_not_a_name_from_the_environment(w: World, action: str) -> None:
    alice, bob = w.key("alice", Role.ML_ENGINEER), w.key("bob", Role.APPROVER)
    w.flow.approve(w.pending(alice), actor=bob)
    pid = w.flow.promote("credit-risk", 2, "risk", "prod", actor=alice).id
    # Claims every role; still only a name (PAVED_ACTOR), so it is refused.
    anon = local("carol", Role.ML_ENGINEER, Role.APPROVER, Role.ADMIN)
    before = state(w.repo)
    attempts: dict[str, Callable[[], object]] = {
        "promote prod": lambda: w.flow.promote("credit-risk", 3, "other", "prod", actor=anon),
        "approve": lambda: w.flow.approve(pid, actor=anon),
        "rollback prod": lambda: w.flow.rollback("risk", "prod", actor=anon),
    }
    with pytest.raises(Unauthenticated) as info:
        attempts[action]()
    assert info.value.rule == "api_key_required"
    assert state(w.repo) == before


def test_the_local_user_may_still_promote_and_roll_back_outside_production(w: World) -> None:
    carol = local("carol", Role.ML_ENGINEER)
    assert w.flow.promote("credit-risk", 1, "risk", "staging", actor=carol).state == "applied"
    w.flow.promote("credit-risk", 2, "risk", "staging", actor=carol)
    assert w.flow.rollback("risk", "staging", actor=carol).to_version == 1


def test_a_key_identity_cannot_be_claimed_by_name() -> None:
    with pytest.raises(ValueError, match="reserved for API keys"):
        Actor(identity="key:00000000000000ad", roles=frozenset({Role.ADMIN}))
    with pytest.raises(ValueError, match="is key:00000000000000ad"):
        Actor(identity="alice", key_id="00000000000000ad")
