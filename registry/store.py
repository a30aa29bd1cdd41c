"""The registry's only contact with MLflow: a small interface and its MLflow implementation.

The registry logic (``registry.service``) talks to :class:`ModelStore`; tests can hand
it a fake, production hands it :class:`MlflowStore` over SQLite or PostgreSQL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException

from paved.errors import BackendError, NotFound

# MLflow draws a progress bar on every download; the CLI prints its own output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class StoredVersion:
    name: str
    version: int
    source: str
    run_id: str | None
    status: str
    tags: dict[str, str]
    aliases: list[str]
    created_ms: int
    description: str


@dataclass(frozen=True)
class StoredModel:
    name: str
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int | None
    created_ms: int
    updated_ms: int
    description: str


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class ModelStore(Protocol):
    """What the registry needs from a model store."""

    def ensure_experiment(self, name: str) -> str: ...
    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str: ...
    def log_run_data(
        self, run_id: str, params: dict[str, str], metrics: dict[str, float]
    ) -> None: ...
    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None: ...
    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None: ...
    def end_run(self, run_id: str, status: str) -> None: ...
    def get_run(self, run_id: str) -> StoredRun | None: ...
    def get_model(self, name: str) -> StoredModel | None: ...
    def create_model(self, name: str, tags: dict[str, str], description: str) -> None: ...
    def create_version(
        self, name: str, source: str, run_id: str | None, tags: dict[str, str], description: str
    ) -> StoredVersion: ...
    def delete_model(self, name: str) -> None: ...
    def delete_version(self, name: str, version: int) -> None: ...
    def get_version(self, name: str, version: int) -> StoredVersion | None: ...
    def get_version_by_alias(self, name: str, alias: str) -> StoredVersion | None: ...
    def set_alias(self, name: str, alias: str, version: int) -> None: ...
    def set_version_tags(
        self, name: str, version: int, tags: dict[str, str], remove: Iterable[str] = ()
    ) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def list_versions(self, name: str) -> list[StoredVersion]: ...
    def list_models(self) -> list[StoredModel]: ...
    def download(self, artifact_uri: str, dst: Path) -> Path: ...


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
        isinstance(exc, RestException) and "not found" in str(exc).lower()
    )


def _experiment_dir(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "default"


class MlflowStore:
    """:class:`ModelStore` over MLflow's tracking store and model registry."""

    def __init__(self, tracking_uri: str, artifact_root: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root.rstrip("/")
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        except MlflowException as exc:
            raise BackendError(f"cannot open the registry store: {exc.message}") from exc

    def ensure_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        try:
            return str(
                self.client.create_experiment(
                    name, artifact_location=f"{self.artifact_root}/{_experiment_dir(name)}"
                )
            )
        except MlflowException:  # created concurrently
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        return str(run.info.run_id)

    def log_run_data(self, run_id: str, params: dict[str, str], metrics: dict[str, float]) -> None:
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def get_run(self, run_id: str) -> StoredRun | None:
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise
        return StoredRun(
            run_id=run.info.run_id,
            artifact_uri=str(run.info.artifact_uri),
            params=dict(run.data.params),
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            tags=dict(run.data.tags),
        )

    def get_model(self, name: str) -> StoredModel | None:
        try:
            rm = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise
        latest = max((int(v.version) for v in rm.latest_versions or []), default=None)
        return StoredModel(
            name=rm.name,
            tags=dict(rm.tags),
            aliases={a: int(v) for a, v in (rm.aliases or {}).items()},
            latest_version=latest,
            created_ms=int(rm.creation_timestamp or 0),
            updated_ms=int(rm.last_updated_timestamp or 0),
            description=rm.description or "",
        )

    def create_model(self, name: str, tags: dict[str, str], description: str) -> None:
        self.client.create_registered_model(name, tags=tags, description=description)

    def create_version(
        self, name: str, source: str, run_id: str | None, tags: dict[str, str], description: str
    ) -> StoredVersion:
        mv = self.client.create_model_version(
            name, source, run_id=run_id, tags=tags, description=description
        )
        return self._version(mv)

    def delete_model(self, name: str) -> None:
        self.client.delete_registered_model(name)

    def delete_version(self, name: str, version: int) -> None:
        self.client.delete_model_version(name, str(version))

    def get_version(self, name: str, version: int) -> StoredVersion | None:
        try:
            return self._version(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise

    def get_version_by_alias(self, name: str, alias: str) -> StoredVersion | None:
        try:
            return self._version(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if _not_found(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
                return None
            raise

    def set_alias(self, name: str, alias: str, version: int) -> None:
        try:
            self.client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as exc:
            if _not_found(exc):
                raise NotFound(f"model version {name}/{version} does not exist") from exc
            raise

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def set_version_tags(
        self, name: str, version: int, tags: dict[str, str], remove: Iterable[str] = ()
    ) -> None:
        """Set tags on a model version and delete the ``remove`` keys (absent ones ignored)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, value)
        for key in remove:
            self.client.delete_model_version_tag(name, str(version), key)

    def list_versions(self, name: str) -> list[StoredVersion]:
        out: list[StoredVersion] = []
        token: str | None = None
        while True:
            page = self.client.search_model_versions(
                f"name = '{name}'", max_results=1000, page_token=token
            )
            out.extend(self._version(mv) for mv in page)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda v: v.version)

    def list_models(self) -> list[StoredModel]:
        out: list[StoredModel] = []
        token: str | None = None
        while True:
            page = self.client.search_registered_models(max_results=1000, page_token=token)
            for rm in page:
                model = self.get_model(rm.name)
                if model is not None:
                    out.append(model)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda m: m.name)

    def download(self, artifact_uri: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(
            download_artifacts(
                artifact_uri=artifact_uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )

    @staticmethod
    def _version(mv: ModelVersion) -> StoredVersion:
        return StoredVersion(
            name=mv.name,
            version=int(mv.version),
            source=str(mv.source),
            run_id=mv.run_id or None,
            status=str(mv.status),
            tags=dict(mv.tags or {}),
            aliases=list(mv.aliases or []),
            created_ms=int(mv.creation_timestamp or 0),
            description=mv.description or "",
        )
