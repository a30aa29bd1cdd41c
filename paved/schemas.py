"""Schemas shared by every domain: who is acting, and with which roles."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    key_id: str | None = Field(
        default=None,
        description="The API key that authenticated this actor (identity ``key:<id>``); "
        "None for the local, unauthenticated user.",
    )

    @model_validator(mode="after")
    def _key_identity(self) -> Actor:
        # ``key:`` identities belong to authenticated keys only, so a name taken from the
        # environment (PAVED_ACTOR=key:...) can never pass for one.
        if self.key_id is not None and self.identity != f"key:{self.key_id}":
            raise ValueError(f"an actor authenticated by key {self.key_id} is key:{self.key_id}")
        if self.key_id is None and self.identity.startswith("key:"):
            raise ValueError("identities starting with 'key:' are reserved for API keys")
        return self

    @property
    def authenticated(self) -> bool:
        """Whether an API key stands behind this actor (not a name from the environment)."""
        return self.key_id is not None

    def has(self, role: Role) -> bool:
        return role in self.roles or (Role.ADMIN in self.roles and role is not Role.PROMOTION)


class KeyLink(BaseModel):
    """One key in a minting chain: who holds it (None: recorded before holders were)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    holder: str | None
