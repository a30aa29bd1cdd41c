"""Moving the registry's ``champion`` alias when a manifest change takes effect.

``champion`` is protected in the registry: only an actor holding the ``promotion``
role may move it, and no API key can hold that role. This module is where that
actor lives, so the alias follows what Git says and nothing else.

The reconciler calls :func:`guard_champions` on every pass with the manifests it
serves: a champion that does not match Git's is moved there. If the history's last
row disagrees with the store, someone moved the alias around the flow (a raw MLflow
client): that move is recorded first, marked ``outside_flow``, and then undone. Every
step is a single write that the next pass re-derives from the store and the history,
so a crash between any two steps converges on the next pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from paved.errors import InvalidInput, NotFound
from paved.manifest import Endpoint
from paved.schemas import Actor, Role
from pipelines.promotion.policy import PromotionPolicy

if TYPE_CHECKING:
    from registry.schemas import AliasEvent, ModelVersionInfo

CHAMPION = "champion"
PROMOTION_ACTOR = Actor(identity="paved-promotion", roles=frozenset({Role.PROMOTION}))
_SHA_RE = re.compile(r"[0-9a-f]{7,64}")


class AliasRegistry(Protocol):
    """The registry as this module needs it."""

    def get(self, ref: str) -> ModelVersionInfo: ...

    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: Actor, reason: str = ""
    ) -> AliasEvent: ...


class GuardedRegistry(AliasRegistry, Protocol):
    """What :func:`guard_champions` needs besides :class:`AliasRegistry`."""

    def last_alias_event(self, name: str, alias: str) -> AliasEvent | None: ...

    def record_observed_move(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        actor: Actor,
        reason: str,
        outside_flow: bool,
    ) -> AliasEvent: ...


ChampionState = Literal["in_sync", "moved", "put_back", "recorded", "conflict", "failed"]


class ChampionStatus(BaseModel):
    """What one pass found and did about a model's ``champion`` alias."""

    model_config = ConfigDict(extra="forbid")

    model: str
    endpoint: str
    git_version: int
    registry_version: int | None
    status: ChampionState
    outside_flow: bool = False
    """A move made around the flow was found (this pass or an interrupted earlier one)."""
    reason: str = ""


def guard_champions(
    registry: GuardedRegistry,
    manifests: Iterable[Endpoint],
    *,
    commit: str,
    policy: PromotionPolicy | None = None,
) -> list[ChampionStatus]:
    """Make each model's ``champion`` alias say what Git says, for the environments whose
    champion the alias follows. One model's failure does not stop the others."""
    policy = policy or PromotionPolicy()
    by_model: dict[str, list[Endpoint]] = {}
    for m in manifests:
        if policy.moves_champion_alias(m.metadata.env):
            by_model.setdefault(m.spec.model, []).append(m)
    out = []
    for model, eps in sorted(by_model.items()):
        if len({e.spec.champion.version for e in eps}) > 1:
            versions = ", ".join(f"{e.name}: v{e.spec.champion.version}" for e in eps)
            out += [
                ChampionStatus(
                    model=model,
                    endpoint=e.name,
                    git_version=e.spec.champion.version,
                    registry_version=None,
                    status="conflict",
                    reason=f"endpoints disagree on the champion ({versions}); alias left alone",
                )
                for e in eps
            ]
            continue
        try:
            out.append(guard_champion(registry, eps[0], commit=commit))
        except Exception as exc:  # reported; the next pass tries again
            out.append(
                ChampionStatus(
                    model=model,
                    endpoint=eps[0].name,
                    git_version=eps[0].spec.champion.version,
                    registry_version=None,
                    status="failed",
                    reason=f"{type(exc).__name__}: {str(exc)[:300]}",
                )
            )
    return out


def guard_champion(registry: GuardedRegistry, manifest: Endpoint, *, commit: str) -> ChampionStatus:
    """One model: compare the alias with Git, record a move made around the flow, put the
    alias back. Idempotent: run again after a crash at any step, it finishes the job."""
    if not _SHA_RE.fullmatch(commit):
        raise InvalidInput(f"commit {commit[:80]!r} is not a Git commit sha", rule="commit_sha")
    env, name = manifest.metadata.env, manifest.name
    model, want = manifest.spec.model, manifest.spec.champion.version
    try:
        observed: int | None = registry.get(f"{model}@{CHAMPION}").version
    except NotFound:
        observed = None
    last = registry.last_alias_event(model, CHAMPION)
    recorded = last.to_version if last else None
    status = ChampionStatus(
        model=model, endpoint=name, git_version=want, registry_version=observed, status="in_sync"
    )
    flow_reason = f"GitOps: champion of {env}/{name} at commit {commit}"
    if observed == want:
        if recorded == observed:
            return status
        # The alias was moved but its history row never written (a crash in between).
        putting_back = last is not None and last.outside_flow
        registry.record_observed_move(
            model,
            CHAMPION,
            observed,
            actor=PROMOTION_ACTOR,
            reason=(
                f"{flow_reason}{': put back (moved around the flow)' if putting_back else ''}"
                " (recorded after an interrupted move)"
            ),
            outside_flow=False,
        )
        if putting_back:
            return status.model_copy(
                update={
                    "status": "put_back",
                    "outside_flow": True,
                    "reason": f"champion was moved outside the flow; put back to v{want}",
                }
            )
        return status.model_copy(update={"status": "recorded"})
    outside = observed != recorded or (last is not None and last.outside_flow)
    if observed != recorded:
        registry.record_observed_move(
            model,
            CHAMPION,
            observed,
            actor=PROMOTION_ACTOR,
            reason=(
                f"moved around the promotion flow (Git's {env}/{name} says v{want}); "
                f"seen by the reconciler at commit {commit}"
            ),
            outside_flow=True,
        )
    registry.set_alias(
        model,
        CHAMPION,
        want,
        actor=PROMOTION_ACTOR,
        reason=f"{flow_reason}: put back (moved around the flow)" if outside else flow_reason,
    )
    return status.model_copy(
        update={
            "status": "put_back" if outside else "moved",
            "outside_flow": outside,
            "reason": (
                f"champion was {_v(observed)} outside the flow; put back to v{want}"
                if outside
                else f"champion moved to v{want}"
            ),
        }
    )


def finalize_champion(
    registry: AliasRegistry,
    manifest: Endpoint,
    *,
    commit: str,
    policy: PromotionPolicy | None = None,
) -> AliasEvent | None:
    """Point ``<model>@champion`` at the manifest's champion, recording the commit.

    Only manifests of the environments the policy names move the alias (by default
    the protected ones: production's champion is the model's champion; staging's is
    not). Returns the alias move, or None when nothing had to move.
    """
    if not _SHA_RE.fullmatch(commit):
        raise InvalidInput(f"commit {commit[:80]!r} is not a Git commit sha", rule="commit_sha")
    env, name = manifest.metadata.env, manifest.name
    if not (policy or PromotionPolicy()).moves_champion_alias(env):
        return None
    model, version = manifest.spec.model, manifest.spec.champion.version
    try:
        if registry.get(f"{model}@{CHAMPION}").version == version:
            return None
    except NotFound:
        pass  # no champion yet
    return registry.set_alias(
        model,
        CHAMPION,
        version,
        actor=PROMOTION_ACTOR,
        reason=f"GitOps: champion of {env}/{name} at commit {commit}",
    )


def _v(version: int | None) -> str:
    return "unset" if version is None else f"v{version}"
