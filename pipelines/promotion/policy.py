"""Who may do what in the promotion flow, and which environments need an approval.

ml-engineer promotes (directly outside the protected environments, as a pending
promotion inside them) and rolls back; approver approves, and may roll back too
(on-call restores a reviewed state); viewer and app only read. Admin holds every
role but ``promotion``, and is still bound by the four-eyes rule. Every refusal
names the role that was needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from paved.errors import InvalidName, PermissionDenied
from paved.schemas import Actor, Role

PROMOTION_ID_RE = re.compile(r"p-[0-9a-f]{8}")
BRANCH_PREFIX = "promotion/"


class PromotionPolicy(BaseModel):
    """Which environments are protected and whose manifests move the registry alias."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protected_envs: frozenset[str] = Field(
        default=frozenset({"prod"}),
        description="Changes here wait on a branch for an approval by another identity.",
    )
    champion_alias_envs: frozenset[str] | None = Field(
        default=None,
        description="Environments whose champion the registry's `champion` alias follows "
        "(default: the protected ones).",
    )

    def is_protected(self, env: str) -> bool:
        return env in self.protected_envs

    def moves_champion_alias(self, env: str) -> bool:
        envs = self.protected_envs if self.champion_alias_envs is None else self.champion_alias_envs
        return env in envs


def require(actor: Actor, roles: Iterable[Role], action: str, *, hint: str = "") -> None:
    """Refuse unless ``actor`` holds one of ``roles``; the message names them."""
    roles = tuple(roles)
    if any(actor.has(r) for r in roles):
        return
    needed = " or ".join(f"'{r.value}'" for r in roles)
    noun = "the role" if len(roles) == 1 else "one of the roles"
    held = ", ".join(sorted(r.value for r in actor.roles)) or "none"
    raise PermissionDenied(
        f"{actor.identity} may not {action}: {noun} {needed} is needed (held: {held}){hint}",
        rule="role",
        details={"needed": [r.value for r in roles]},
    )


def validate_promotion_id(value: object) -> str:
    """Promotion ids are ``p-`` and 8 hex digits (they name a Git branch)."""
    if not isinstance(value, str) or not PROMOTION_ID_RE.fullmatch(value):
        shown = repr(value)[:40]
        raise InvalidName(f"promotion id {shown} must look like p-1a2b3c4d", rule="promotion_id")
    return value


def branch_for(promotion_id: str) -> str:
    return BRANCH_PREFIX + validate_promotion_id(promotion_id)
