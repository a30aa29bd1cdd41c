"""The champion alias against Git: a move made around the flow is recorded (marked
``outside_flow``) and put back, and the whole job converges after a crash at any step."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from paved.errors import NotFound
from paved.manifest import Endpoint
from paved.schemas import Actor, Role
from pipelines.promotion.champion import guard_champion, guard_champions
from registry.schemas import AliasEvent, ModelVersionInfo
from tests.unit.pipelines.gitops_fakes import T0, version_info

pytestmark = pytest.mark.unit

COMMIT = "a" * 40
MODEL = "credit-risk"


class Crash(Exception):
    """The process died here."""


@dataclass
class CrashingRegistry:
    """An alias store and its history as two separate writes each, like MLflow plus the
    history table; ``crash_before`` kills the process before that write (1-based)."""

    alias: int | None = None
    rows: list[AliasEvent] = field(default_factory=list)
    crash_before: int | None = None
    writes: int = 0

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.crash_before:
            raise Crash(f"killed before write {self.writes}")

    def get(self, ref: str) -> ModelVersionInfo:
        if self.alias is None:
            raise NotFound(f"{ref} does not exist")
        return version_info(MODEL, self.alias)

    def last_alias_event(self, name: str, alias: str) -> AliasEvent | None:
        return self.rows[-1] if self.rows else None

    def _append(self, to: int | None, actor: str, reason: str, outside: bool) -> AliasEvent:
        self._write()
        event = AliasEvent(
            model=MODEL,
            alias="champion",
            from_version=self.rows[-1].to_version if self.rows else None,
            to_version=to,
            actor=actor,
            reason=reason,
            at=T0,
            outside_flow=outside,
        )
        self.rows.append(event)
        return event

    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: Actor, reason: str = ""
    ) -> AliasEvent:
        assert Role.PROMOTION in actor.roles
        self._write()
        self.alias = int(version)  # the store moved ...
        return self._append(int(version), actor.identity, reason, False)  # ... then history

    def record_observed_move(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        actor: Actor,
        reason: str,
        outside_flow: bool,
    ) -> AliasEvent:
        assert Role.PROMOTION in actor.roles
        return self._append(
            to_version, "outside" if outside_flow else actor.identity, reason, outside_flow
        )

    def move_around_the_flow(self, version: int | None) -> None:
        """A raw MlflowClient: the store changes, the history does not."""
        self.alias = version


def prod(version: int, name: str = "risk") -> Endpoint:
    return Endpoint.model_validate(
        {
            "metadata": {"name": name, "env": "prod", "team": "risk"},
            "spec": {"model": MODEL, "champion": {"version": version}},
        }
    )


def settled(flow_champion: int) -> CrashingRegistry:
    reg = CrashingRegistry()
    assert guard_champion(reg, prod(flow_champion), commit=COMMIT).status == "moved"
    return reg


def test_in_sync_changes_nothing() -> None:
    reg = settled(2)
    before = list(reg.rows)
    assert guard_champion(reg, prod(2), commit=COMMIT).status == "in_sync"
    assert reg.rows == before


def test_a_move_around_the_flow_is_recorded_and_put_back() -> None:
    reg = settled(2)
    reg.move_around_the_flow(9)
    status = guard_champion(reg, prod(2), commit=COMMIT)
    assert (status.status, status.outside_flow, status.registry_version) == ("put_back", True, 9)
    assert reg.alias == 2
    outside = [r for r in reg.rows if r.outside_flow]
    assert [(r.from_version, r.to_version) for r in outside] == [(2, 9)]
    assert (reg.rows[-1].from_version, reg.rows[-1].to_version) == (9, 2)
    assert not reg.rows[-1].outside_flow


def test_a_removed_alias_is_put_back() -> None:
    reg = settled(2)
    reg.move_around_the_flow(None)
    status = guard_champion(reg, prod(2), commit=COMMIT)
    assert (status.status, reg.alias) == ("put_back", 2)


def test_a_flow_move_follows_git() -> None:
    reg = settled(1)
    status = guard_champion(reg, prod(2), commit=COMMIT)
    assert (status.status, status.outside_flow, reg.alias) == ("moved", False, 2)
    assert not any(r.outside_flow for r in reg.rows)


@pytest.mark.parametrize("outside_move", [True, False])
@pytest.mark.parametrize("crash_before", [1, 2, 3])
def test_converges_after_a_crash_at_any_step(outside_move: bool, crash_before: int) -> None:
    reg = settled(1)
    if outside_move:
        reg.move_around_the_flow(9)
    reg.writes, reg.crash_before = 0, crash_before
    outcomes = []
    for _ in range(4):  # each try is a new pass of a restarted reconciler
        try:
            outcomes.append(guard_champion(reg, prod(2), commit=COMMIT))
        except Crash:
            continue
        if outcomes[-1].status == "in_sync":
            break
    assert reg.alias == 2
    last = reg.rows[-1]
    assert (last.to_version, last.outside_flow) == (2, False)  # history agrees with the store
    assert [r.to_version for r in reg.rows if r.outside_flow] == ([9] if outside_move else [])
    assert outcomes[-1].status == "in_sync"
    assert guard_champion(reg, prod(2), commit=COMMIT).status == "in_sync"
    if outside_move:  # the pass that repaired it said so, whichever it was
        assert any(o.outside_flow for o in outcomes)


def test_only_the_environments_the_alias_follows() -> None:
    reg = settled(1)
    staging = Endpoint.model_validate(
        {
            "metadata": {"name": "risk", "env": "staging", "team": "risk"},
            "spec": {"model": MODEL, "champion": {"version": 2}},
        }
    )
    assert guard_champions(reg, [staging], commit=COMMIT) == []
    assert reg.alias == 1


def test_endpoints_that_disagree_leave_the_alias_alone() -> None:
    reg = settled(1)
    statuses = guard_champions(reg, [prod(1, "a"), prod(2, "b")], commit=COMMIT)
    assert {s.status for s in statuses} == {"conflict"}
    assert reg.alias == 1


def test_one_models_failure_is_reported_not_raised() -> None:
    reg = settled(1)
    reg.writes, reg.crash_before = 0, 1
    [status] = guard_champions(reg, [prod(2)], commit=COMMIT)
    assert status.status == "failed"
    assert "killed" in status.reason
