"""The Endpoint manifest: one schema for `paved serve --manifests DIR` and the GitOps repo.

The same pydantic model validates YAML files, API bodies and CLI input, and exports the
JSON Schema editors and CI use. Unknown fields are refused so a typo never silently
becomes a default.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paved.documents import parse_yaml_document
from paved.errors import InvalidInput
from paved.names import EndpointName, EnvName, ModelName, TeamName

_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"60s"``, ``"5m"``, ``"250ms"``, ``"1h"`` -> seconds."""
    m = _DURATION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"duration {text!r} must look like 250ms, 60s, 5m or 1h")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    name: EndpointName = Field(description="Endpoint name: the `model` field clients send.")
    env: EnvName = Field(default="local", description="Environment (dev, staging, prod, ...).")
    team: TeamName = Field(description="Team that owns the endpoint.")


Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
_DIGEST_HELP = (
    "sha256 of the version's digest manifest (pins every file), written by the promotion "
    "commit. Required in GitOps environments: the reconciler refuses a version whose "
    "registry digest differs, and replicas verify the files against this value. In a "
    "`paved serve --manifests` folder it may be left out; the registry's digest is then "
    "resolved once at start and pinned for the replicas."
)


class Champion(_Strict):
    version: int = Field(ge=1, description="Registered version serving the main traffic.")
    digest: Digest | None = Field(default=None, description=_DIGEST_HELP)


class Challenger(_Strict):
    version: int = Field(ge=1, description="Registered version under evaluation.")
    digest: Digest | None = Field(default=None, description=_DIGEST_HELP)
    mode: Literal["canary", "shadow"] = Field(
        default="canary", description="canary: a share of live traffic; shadow: a mirror."
    )
    weight: int = Field(
        default=0, ge=0, le=100, description="Percent of traffic it receives now (canary)."
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Traffic percentages the canary walks through.",
    )
    interval: str = Field(default="60s", description="Time at each step before analysis.")
    sticky: bool = Field(default=False, description="Keep a user on one side (x-paved-user).")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if not v or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("steps must be a non-empty, strictly increasing list within 1..100")
        return v

    @field_validator("interval")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class Replicas(_Strict):
    min: int = Field(default=1, ge=0, le=64)
    max: int = Field(default=1, ge=1, le=64)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        return self


class Resources(_Strict):
    gpu: float = Field(default=0.0, ge=0.0, le=8.0, description="GPUs per replica; 0 = CPU.")
    cpu: float = Field(default=1.0, gt=0.0, le=64.0, description="CPUs per replica.")


class Slo(_Strict):
    availability: float = Field(default=99.9, gt=0.0, lt=100.0)
    latency_p95_ms: float | None = Field(default=None, gt=0.0)
    ttft_p95_ms: float | None = Field(default=None, gt=0.0)


class Analysis(_Strict):
    max_error_rate_delta: float = Field(default=0.01, ge=0.0, le=1.0)
    max_latency_ratio: float = Field(default=1.2, gt=0.0)
    max_cost_ratio: float = Field(default=1.1, gt=0.0)


class Limits(_Strict):
    """Per-request caps; past them the gateway answers 400 naming the limit."""

    max_tokens: int = Field(default=512, ge=1, le=1_000_000)
    max_n: int = Field(default=4, ge=1, le=128)
    max_logprobs: int = Field(default=5, ge=0, le=20)
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="Defaults to the model's context minus max_tokens."
    )
    max_batch_rows: int = Field(default=1024, ge=1, le=1_000_000, description="v2 infer rows.")
    max_inflight: int = Field(
        default=256, ge=1, le=100_000, description="Requests in flight; past it: 429 at once."
    )


class Access(_Strict):
    teams: list[TeamName] = Field(
        default_factory=list, description="Teams whose keys may call it (the owner always may)."
    )


class EndpointSpec(_Strict):
    model: ModelName = Field(description="Registered model name.")
    champion: Champion
    challenger: Challenger | None = None
    replicas: Replicas = Field(default_factory=Replicas)
    resources: Resources = Field(default_factory=Resources)
    slo: Slo = Field(default_factory=Slo)
    analysis: Analysis = Field(default_factory=Analysis)
    limits: Limits = Field(default_factory=Limits)
    access: Access = Field(default_factory=Access)
    max_model_len: int = Field(default=256, ge=16, le=131072, description="LLM context.")

    @model_validator(mode="after")
    def _distinct(self) -> EndpointSpec:
        if self.challenger and self.challenger.version == self.champion.version:
            raise ValueError("challenger.version must differ from champion.version")
        return self


class Endpoint(_Strict):
    apiVersion: Literal["pavedpath/v1"] = "pavedpath/v1"
    kind: Literal["Endpoint"] = "Endpoint"
    metadata: Metadata
    spec: EndpointSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def pinned_digest(self, version: int) -> str | None:
        """The digest the manifest pins for one of its versions (None: not pinned)."""
        if self.spec.champion.version == version:
            return self.spec.champion.digest
        if self.spec.challenger and self.spec.challenger.version == version:
            return self.spec.challenger.digest
        return None

    def allows(self, team: str | None) -> bool:
        return team is not None and (team == self.metadata.team or team in self.spec.access.teams)


def parse_endpoint(
    text: str, *, source: str, name: str | None = None, env: str | None = None
) -> Endpoint:
    """The one way from a manifest's text to a validated Endpoint.

    YAML (rule ``manifest_yaml``), then the schema (``manifest_schema``, every error in
    details), then, when the caller knows them, the name its file gives
    (``manifest_name``) and the environment it was read for (``manifest_env``): a copied
    file can never silently take over another endpoint. Every message names ``source``.
    """
    endpoint = parse_yaml_document(Endpoint, text, source=source, rule="manifest")
    if name is not None and endpoint.name != name:
        raise InvalidInput(
            f"{source}: metadata.name {endpoint.name!r} does not match the file name {name!r}",
            rule="manifest_name",
        )
    if env is not None and endpoint.metadata.env != env:
        raise InvalidInput(
            f"{source}: metadata.env {endpoint.metadata.env!r} does not match environment {env!r}",
            rule="manifest_env",
        )
    return endpoint


def load_endpoint(path: Path) -> Endpoint:
    """Read and validate one manifest file; every failure says which file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read manifest: {exc}", rule="manifest_yaml") from exc
    return parse_endpoint(text, source=str(path))


def load_endpoints(directory: Path) -> list[Endpoint]:
    """Every ``*.yaml``/``*.yml`` manifest in a directory; endpoint names must be unique."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory", rule="manifest_dir")
    endpoints = [
        load_endpoint(p) for p in sorted(directory.iterdir()) if p.suffix in (".yaml", ".yml")
    ]
    seen: set[str] = set()
    for ep in endpoints:
        if ep.name in seen:
            raise InvalidInput(f"endpoint {ep.name!r} is defined twice", rule="manifest_unique")
        seen.add(ep.name)
    if not endpoints:
        raise InvalidInput(f"no endpoint manifests in {directory}", rule="manifest_dir")
    return endpoints
