"""The one place environment variables are read.

Every setting is a ``PAVED_*`` variable (``PAVED_HOME``, ``PAVED_REGISTRY_URI``, ...).
Code receives a :class:`Settings` instance; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import getpass
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


class Settings(BaseSettings):
    """Typed settings, read from ``PAVED_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PAVED_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("~/.pavedpath"),
        description="Data directory: registry database, artifacts, GitOps repo, caches.",
    )
    registry_uri: str | None = Field(
        default=None,
        description=(
            "MLflow backend store URI. Unset: SQLite under PAVED_HOME. "
            "A postgresql:// URI uses PostgreSQL."
        ),
    )
    artifact_root: str | None = Field(
        default=None,
        description="Where registered artifacts live. Unset: PAVED_HOME/artifacts.",
    )
    allowed_source_prefixes: list[str] = Field(
        default_factory=list,
        description=(
            "Extra source URI prefixes (e.g. s3://bucket/models/) a version may be "
            "registered from, besides runs:/ and models:/ URIs of this registry."
        ),
    )
    actor: str = Field(
        default_factory=_default_actor,
        description="Identity recorded in lineage, alias history and audit entries.",
    )
    team: str = Field(
        default="default", description="Team recorded as owner of what the CLI registers."
    )
    api_key: str | None = Field(
        default=None,
        description="API key the CLI acts with; its roles decide what the CLI may do.",
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join; unset: start a local Ray."
    )
    replica_host: str = Field(
        default="127.0.0.1",
        description="Address model replicas bind; 'auto' uses each node's IP (clusters).",
    )
    gateway_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A client must send a request's headers within this (from connecting or "
        "from the request's first byte); else the gateway closes the connection.",
    )
    gateway_body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A client must send a request's body within this after its headers.",
    )
    gateway_keep_alive_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="An idle keep-alive connection to the gateway is closed after this.",
    )
    gateway_max_connections: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Open connections per gateway replica; past it, new ones are closed at once.",
    )
    reconcile_interval_s: float = Field(
        default=5.0, gt=0, description="How often `paved serve --env` polls the GitOps repo."
    )
    reconcile_backoff_max_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description=(
            "Cap of the reconciler's retry delay: after a failed pass it waits the interval "
            "times 2^(failures in a row), at most this, and the interval again after a success."
        ),
    )
    replica_start_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description=(
            "Deadline for a new replica set to be running; past it (or when Ray Serve reports "
            "it failed) that version is refused for its endpoint and its application deleted."
        ),
    )
    gateway_stream_idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description=(
            "A stream whose replica sends nothing this long is ended by the gateway with an "
            "error event and [DONE] (a stalled replica cannot hold a client forever)."
        ),
    )
    max_name_length: int = Field(default=64, ge=1, le=255)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def tracking_uri(self) -> str:
        """The MLflow store URI actually used."""
        if self.registry_uri:
            return self.registry_uri
        return f"sqlite:///{self.home / 'registry.db'}"

    @cached_property
    def artifact_location(self) -> str:
        """Root under which the registry generates every artifact location."""
        if self.artifact_root:
            return self.artifact_root
        return (self.home / "artifacts").as_uri()

    @property
    def cache_dir(self) -> Path:
        """Verified model downloads."""
        return self.home / "cache"

    @property
    def gitops_dir(self) -> Path:
        """The GitOps repository (a local repo, or the clone of PAVED_GITOPS_REMOTE)."""
        return self.home / "gitops"

    @property
    def reconciler_dir(self) -> Path:
        """What the reconciler applied, per environment."""
        return self.home / "reconciler"

    @property
    def work_dir(self) -> Path:
        """Scratch space for trainers."""
        return self.home / "work"

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def load_settings() -> Settings:
    return Settings()
