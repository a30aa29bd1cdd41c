"""Schemas shared by every domain: who is acting, and with which roles."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    """Roles a key or identity can hold.

    ``promotion`` is not grantable to an API key: only the promotion flow acts with it,
    which is how moving a protected alias (``champion``) is kept inside that flow.
    """

    APP = "app"
    ML_ENGINEER = "ml-engineer"
    APPROVER = "approver"
    VIEWER = "viewer"
    ADMIN = "admin"
    PROMOTION = "promotion"


GRANTABLE_ROLES = frozenset(r for r in Role if r is not Role.PROMOTION)


class Actor(BaseModel):
    """Who performs an action; recorded in lineage, alias history and audit entries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: str = Field(min_length=1, max_length=128, description="User or key id.")
    roles: frozenset[Role] = Field(default_factory=frozenset)
    team: str | None = Field(default=None, description="Team the identity belongs to.")

    def has(self, role: Role) -> bool:
        return role in self.roles or (Role.ADMIN in self.roles and role is not Role.PROMOTION)
