"""Fakes and helpers for the GitOps unit tests: a clock, a catalog, actors, real git repos."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from paved.errors import DigestMismatch, NotFound
from paved.names import ModelRef
from paved.schemas import Actor, KeyLink, Role
from pipelines.gitops.repo import GitOpsRepo
from pipelines.promotion import GateOutcome, GateRequest, Promotions
from registry.digests import DigestManifest
from registry.schemas import AliasEvent, Lineage, ModelVersionInfo

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class StepClock:
    """Each call returns a time one hour after the previous one, from T0."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(hours=1)) -> None:
        self.now, self.step = start - step, step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def manifest_of(version: int) -> DigestManifest:
    """A digest manifest that differs per version (so each version has its own digest)."""
    return DigestManifest(files={"model.safetensors": f"{version:064x}"})


def digest_of(version: int) -> str:
    return manifest_of(version).digest


def version_info(name: str, version: int, team: str = "risk") -> ModelVersionInfo:
    return ModelVersionInfo(
        name=name,
        version=version,
        aliases=[],
        status="READY",
        source=f"file:///artifacts/{name}/{version}",
        created_at=T0,
        lineage=Lineage(
            team=team,
            task="tabular-classification",
            framework="torch",
            git_commit="0" * 40,
            dataset_digest="sha256:" + "1" * 64,
            registered_by="tester",
            run_id=None,
        ),
        digest=digest_of(version),
        manifest=manifest_of(version),
    )


@dataclass
class FakeCatalog:
    """The registry as the promotion flow sees it: versions, and a champion alias."""

    versions: dict[str, set[int]] = field(default_factory=lambda: {"credit-risk": {1, 2, 3}})
    aliases: dict[tuple[str, str], int] = field(default_factory=dict)
    moves: list[AliasEvent] = field(default_factory=list)

    def get(self, ref: str) -> ModelVersionInfo:
        r = ModelRef.parse(ref)
        version = r.version if r.alias is None else self.aliases.get((r.name, r.alias))
        if version is None or version not in self.versions.get(r.name, set()):
            raise NotFound(f"model version {ref} does not exist")
        return version_info(r.name, version)

    def get_pinned(self, ref: str, digest: str) -> ModelVersionInfo:
        info = self.get(ref)
        if info.digest != digest:
            raise DigestMismatch(f"{ref} is not pinned to {digest}", rule="digest_mismatch")
        return info

    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: Actor, reason: str = ""
    ) -> AliasEvent:
        assert Role.PROMOTION in actor.roles
        event = AliasEvent(
            model=name,
            alias=alias,
            from_version=self.aliases.get((name, alias)),
            to_version=int(version),
            actor=actor.identity,
            reason=reason,
            at=T0,
        )
        self.aliases[(name, alias)] = int(version)
        self.moves.append(event)
        return event

    def last_alias_event(self, name: str, alias: str) -> AliasEvent | None:
        """The alias history is the moves made (newest last)."""
        return next((e for e in reversed(self.moves) if (e.model, e.alias) == (name, alias)), None)

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
        """A move the store shows but the history lacks, appended to the history."""
        assert Role.PROMOTION in actor.roles
        last = self.last_alias_event(name, alias)
        event = AliasEvent(
            model=name,
            alias=alias,
            from_version=last.to_version if last else None,
            to_version=to_version,
            actor="outside" if outside_flow else actor.identity,
            reason=reason,
            at=T0,
            outside_flow=outside_flow,
        )
        self.moves.append(event)
        return event


@dataclass
class FakeKeys:
    """The key store as four eyes sees it: key id -> (holder, the key that minted it)."""

    keys: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def add(self, key_id: str, holder: str | None, minted_by: str | None = None) -> str:
        self.keys[key_id] = (holder, minted_by)
        return key_id

    def lineage(self, key_id: str) -> list[KeyLink]:
        chain: list[KeyLink] = []
        current: str | None = key_id
        while current is not None and current in self.keys and len(chain) < 64:
            holder, minted_by = self.keys[current]
            chain.append(KeyLink(key_id=current, holder=holder))
            current = minted_by
        return chain


KEYS = FakeKeys()
ROOT_KEY = KEYS.add("00000000000000ad", "ops")  # the bootstrap admin's key, held by ops


def key_id_for(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def actor(
    name: str,
    *roles: Role,
    team: str = "risk",
    keys: FakeKeys = KEYS,
    minted_by: str | None = ROOT_KEY,
    holder: str | None = None,
) -> Actor:
    """An actor authenticated by a key held by ``name`` (minted by ops' admin key)."""
    key_id = keys.add(key_id_for(name), holder or name, minted_by)
    return Actor(identity=f"key:{key_id}", roles=frozenset(roles), team=team, key_id=key_id)


def local(identity: str, *roles: Role, team: str = "risk") -> Actor:
    """The local user without a key: a name from the environment, not an identity."""
    return Actor(identity=identity, roles=frozenset(roles), team=team)


ALICE = actor("alice", Role.ML_ENGINEER)
BOB = actor("bob", Role.APPROVER)
VIC = actor("vic", Role.VIEWER)


def passing_gate(request: GateRequest) -> GateOutcome:
    return GateOutcome(passed=True, summary=f"auc 0.83 >= champion v{request.champion_version}")


def make_repo(tmp: Path, **kw: object) -> GitOpsRepo:
    return GitOpsRepo.init(tmp / "gitops", actor=ALICE, clock=StepClock(), **kw)  # type: ignore[arg-type]


def make_flow(tmp: Path) -> tuple[GitOpsRepo, Promotions, FakeCatalog]:
    repo, catalog = make_repo(tmp), FakeCatalog()
    return repo, Promotions(repo, catalog, keys=KEYS), catalog


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def state(repo: GitOpsRepo) -> tuple[str, str, str]:
    """Everything a refused action must leave alone: all refs, the status, the files."""
    return (
        git(repo.path, "for-each-ref", "--format=%(refname) %(objectname)"),
        git(repo.path, "status", "--porcelain", "--untracked-files=all"),
        git(repo.path, "ls-files", "-s"),
    )
