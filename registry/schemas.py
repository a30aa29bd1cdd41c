"""Typed views of what the registry stores, independent of MLflow's entities."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from paved.kinds import TASKS as TASKS  # re-exported: what registration accepts
from paved.kinds import Task as Task
from registry.digests import DigestManifest
from registry.profile import DataProfile

# Model version tags written by Pavedpath. They are the record of lineage in MLflow,
# so the MLflow UI shows the same facts the CLI does.
TAG_PREFIX = "paved."
TAG_TEAM = "paved.team"
TAG_TASK = "paved.task"
TAG_FRAMEWORK = "paved.framework"
TAG_KIND = "paved.kind"
TAG_GIT_COMMIT = "paved.git_commit"
TAG_DATASET_DIGEST = "paved.dataset_digest"
TAG_DIGEST = "paved.digest"
TAG_DIGESTS = "paved.digests"
TAG_REGISTERED_BY = "paved.registered_by"

# The frameworks Pavedpath can evaluate and serve; anything else is refused at
# registration rather than written into a model card nobody can serve. The tasks, and
# what each means for serving and evaluation, are the table in paved/kinds.py.
Framework = Literal["transformers", "torch"]
FRAMEWORKS: tuple[str, ...] = get_args(Framework)

# Artifact layout of a registered run: the model files alone under model/, Pavedpath's
# metadata beside them so it is never part of the hashed model directory.
MODEL_ARTIFACT_PATH = "model"
META_ARTIFACT_PATH = "paved"
PROFILE_FILE = "reference_profile.json"
CARD_FILE = "MODEL_CARD.md"
DIGESTS_FILE = "digests.json"


class Lineage(BaseModel):
    """Where a version came from."""

    model_config = ConfigDict(extra="forbid")

    team: str
    task: str
    framework: str
    kind: str | None = Field(default=None, description="Bundled model kind, if any.")
    git_commit: str
    dataset_digest: str
    registered_by: str
    run_id: str | None


class ModelVersionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    aliases: list[str]
    status: str
    source: str
    created_at: datetime
    description: str = ""
    lineage: Lineage
    digest: str = Field(description="sha256 of the digest manifest: pins every file.")
    manifest: DigestManifest

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


class RegisteredModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    team: str | None
    latest_version: int | None
    aliases: dict[str, int]
    created_at: datetime
    updated_at: datetime
    description: str = ""


class AliasEvent(BaseModel):
    """One move of an alias: who moved it, from which version to which, when, why."""

    model_config = ConfigDict(extra="forbid")

    model: str
    alias: str
    from_version: int | None
    to_version: int | None = Field(description="None when the alias was removed.")
    actor: str
    reason: str = ""
    at: datetime
    outside_flow: bool = Field(
        default=False,
        description="The move was made around Pavedpath (seen in the store, not made by it).",
    )


class HistoryEntry(BaseModel):
    """A line of ``paved models history``: a registration or an alias move."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    event: Literal["registered", "alias_set", "alias_removed"]
    version: int | None
    alias: str | None = None
    from_version: int | None = None
    actor: str
    detail: str = ""
    outside_flow: bool = False


class ModelVersionDetail(ModelVersionInfo):
    """A version with what its training run recorded: for ``paved models show``."""

    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelPackage(BaseModel):
    """A model directory and the facts recorded with it when it is logged."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path
    team: str
    task: Task
    framework: Framework
    kind: str | None = None
    git_commit: str
    dataset_digest: str
    dataset_description: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    reference_profile: DataProfile | None = None
    intended_use: str = "Not stated."
    limitations: str = "Not stated."


class LoggedRun(BaseModel):
    """A run logged by Pavedpath, as ``log_package`` returns it.

    Holding it lets the caller register the run without reading it back from the store.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    artifact_uri: str
    tags: dict[str, str]
    manifest: DigestManifest
