"""What the promotion flow returns: typed records of promotions, approvals, rollbacks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.promotion.gate import Mode


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Promotion(_Record):
    id: str
    state: Literal["applied", "pending"] = Field(
        description="applied: on main; pending: on its branch, waiting for an approval."
    )
    model: str
    endpoint: str
    env: str
    mode: Mode
    from_version: int | None = Field(description="The champion before (None: new endpoint).")
    to_version: int
    actor: str
    commit: str
    branch: str
    gate: str = Field(description="What the gate said, as recorded in the commit.")


class Approval(_Record):
    promotion_id: str
    commit: str = Field(description="The merge commit on main.")
    approved_by: str
    promoted_by: str
    model: str
    endpoint: str
    env: str
    from_version: int | None
    to_version: int


class Rollback(_Record):
    commit: str = Field(description="The revert commit on main.")
    reverted: str = Field(description="The commit it undoes.")
    endpoint: str
    env: str
    from_version: int = Field(
        description="The newest version serving before (challenger or champion)."
    )
    to_version: int = Field(description="The champion after the rollback.")
    actor: str
