"""The Team policy: ``teams/<team>.yaml`` in the GitOps repository.

A team's spend budget, its GPU quota and the endpoints its keys may call live in Git
beside the endpoint manifests, so a change to them is reviewed and audited the same
way. Unknown fields are refused, so a typo never silently becomes "no limit".

```yaml
apiVersion: pavedpath/v1
kind: Team
metadata: {name: risk}
spec:
  budget: {amount_usd: 250, window: 24h}
  gpu_quota: 2
  endpoints: [risk, chat]
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paved.documents import parse_yaml_document
from paved.errors import InvalidInput
from paved.manifest import parse_duration
from paved.names import EndpointName, TeamName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeamMetadata(_Strict):
    name: TeamName = Field(description="Team name; API keys and endpoints refer to it.")


class Budget(_Strict):
    amount_usd: float = Field(ge=0.0, le=1e9, description="Spend allowed per window, in USD.")
    window: str = Field(
        default="24h", description="Rolling window the amount applies to (e.g. 1h, 24h)."
    )

    @field_validator("window")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError("window must be longer than zero")
        return v

    @property
    def window_s(self) -> float:
        return parse_duration(self.window)


class TeamSpec(_Strict):
    budget: Budget | None = Field(
        default=None, description="Spend limit per window; absent means unmetered (not free)."
    )
    gpu_quota: float = Field(
        default=0.0,
        ge=0.0,
        le=4096.0,
        description="GPUs the team's endpoints may hold in total (replicas x GPU share).",
    )
    endpoints: list[EndpointName] = Field(
        default_factory=list,
        description="Endpoints owned by other teams that this team's keys may call.",
    )

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("endpoints must not repeat a name")
        return v


class Team(_Strict):
    apiVersion: Literal["pavedpath/v1"] = "pavedpath/v1"
    kind: Literal["Team"] = "Team"
    metadata: TeamMetadata
    spec: TeamSpec = Field(default_factory=TeamSpec)

    @property
    def name(self) -> str:
        return self.metadata.name

    def may_call(self, endpoint: str) -> bool:
        return endpoint in self.spec.endpoints


def team_from_yaml(text: str, *, source: str) -> Team:
    """Validate one team policy given as YAML text; ``source`` names it in errors."""
    return parse_yaml_document(Team, text, source=source, rule="team")


def load_team(path: Path) -> Team:
    """Read and validate ``teams/<team>.yaml``; the file name must be the team's name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read team policy: {exc}", rule="team_yaml") from exc
    team = team_from_yaml(text, source=str(path))
    if path.stem != team.name:
        raise InvalidInput(
            f"{path}: metadata.name {team.name!r} does not match the file name",
            rule="team_path",
        )
    return team
