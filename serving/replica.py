"""A model replica: a Ray Serve deployment that loads one registered version and serves
its protocol on its own HTTP server.

Ray Serve places, scales, health-checks and replaces the replicas; requests do not go
through Serve's proxy or handles (measured too slow for the gateway's goals, see
docs/benchmarks.md): the replica publishes its HTTP address through Serve's
``record_replica_metadata`` hook and the gateway sends requests there directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from paved.errors import InvalidInput
from paved.kinds import kind_of
from paved.manifest import Limits
from paved.settings import Settings
from serving.backends.base import Backend, BackendConfig

if TYPE_CHECKING:
    from registry.service import Registry

log = logging.getLogger("ray.serve")


class ReplicaSpec(BaseModel):
    """Everything a replica needs, passed by value into the Ray worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str
    model_name: str
    version: int = Field(ge=1)
    digest: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="The digest Git pins (or, for a --manifests folder, the one resolved "
        "at start): the files are verified against it, never against the registry's tag.",
    )
    task: str
    home: Path = Field(description="PAVED_HOME of the registry to load from.")
    registry_uri: str | None = None
    artifact_root: str | None = None
    bind_host: str = Field(
        default="127.0.0.1", description="Replica HTTP bind address; 'auto' = the node's IP."
    )
    max_model_len: int = 256
    max_batch_rows: int = 1024
    max_concurrency: int = 64
    limits: Limits = Field(default_factory=Limits, description="The endpoint's request caps.")
    engine_options: dict[str, Any] = Field(default_factory=dict)
    internal_token: str = Field(
        repr=False, description="Shared secret the gateway sends; other callers get 403."
    )


def load_model_dir(spec: ReplicaSpec, registry: Registry) -> Path:
    """Download the version and verify it against the pinned digest before anything
    reads the files: a rewritten digest tag or a changed artifact is refused here
    (``digest_mismatch``), so the replica never starts on it."""
    return registry.fetch(f"{spec.model_name}/{spec.version}", digest=spec.digest)


BackendFactory = Callable[["ReplicaSpec", BackendConfig], Backend]


def _llm(spec: ReplicaSpec, config: BackendConfig) -> Backend:
    from serving.backends.llm import LLMBackend

    return LLMBackend(config, engine_options=spec.engine_options or None, limits=spec.limits)


def _tabular(spec: ReplicaSpec, config: BackendConfig) -> Backend:
    from serving.backends.tabular import TabularBackend

    return TabularBackend(config)


# backend name (the kind table's ``backend``) -> how to build it; the engines are
# imported on first use, so importing this module stays cheap.
BACKENDS: Mapping[str, BackendFactory] = MappingProxyType({"llm": _llm, "tabular": _tabular})


def build_backend(spec: ReplicaSpec, model_dir: Path) -> Backend:
    kind = kind_of(spec.task)
    if kind is None:
        raise InvalidInput(f"no backend serves task {spec.task!r}", rule="task")
    config = BackendConfig(
        endpoint=spec.endpoint,
        model_name=spec.model_name,
        version=spec.version,
        model_dir=model_dir,
        max_model_len=spec.max_model_len,
        max_batch_rows=spec.max_batch_rows,
        max_concurrency=spec.max_concurrency,
    )
    return BACKENDS[kind.backend](spec, config)


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0}, health_check_period_s=5)
class ModelReplica:
    async def __init__(self, spec: ReplicaSpec) -> None:  # type: ignore[misc]
        import ray

        from registry.service import Registry
        from serving.http_server import EmbeddedServer
        from serving.internal_auth import require_token

        settings = Settings(
            home=spec.home, registry_uri=spec.registry_uri, artifact_root=spec.artifact_root
        )
        registry = Registry.from_settings(settings)
        model_dir = load_model_dir(spec, registry)
        self.backend = build_backend(spec, model_dir)
        await self.backend.start()
        host = ray.util.get_node_ip_address() if spec.bind_host == "auto" else spec.bind_host
        app = require_token(self.backend.app(), spec.internal_token)
        self.server = EmbeddedServer(app, host, 0)
        self.server.start()
        await self.server.wait_started()
        log.info(
            "replica of %s v%s serving on %s", spec.endpoint, spec.version, self.server.address
        )

    def record_replica_metadata(self) -> dict[str, str]:
        return {"http": self.server.address}

    async def check_health(self) -> None:
        if not self.backend.ready:
            raise RuntimeError("backend is not ready")

    async def __call__(self) -> str:
        return self.server.address

    async def __del__(self) -> None:
        await self.server.stop()
        await self.backend.stop()
