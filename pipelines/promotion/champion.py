"""Moving the registry's ``champion`` alias when a manifest change takes effect.

``champion`` is protected in the registry: only an actor holding the ``promotion``
role may move it, and no API key can hold that role. This module is where that
actor lives, so the alias follows what Git says and nothing else. The reconciler
calls :func:`finalize_champion` once it has applied a commit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

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
