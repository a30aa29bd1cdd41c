"""What every bundled trainer hands back: a model directory plus its lineage."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from paved.kinds import Task
from registry.profile import DataProfile
from registry.schemas import Framework


class TrainResult(BaseModel):
    """A trained model on disk and everything the registry records about it."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    kind: str = Field(description="Bundled model kind, e.g. 'tiny-gpt'.")
    model_dir: Path = Field(description="Directory holding only the model's files.")
    task: Task
    framework: Framework
    params: dict[str, str | int | float | bool] = Field(
        description="Hyper-parameters and data sizes, logged as MLflow params."
    )
    metrics: dict[str, float] = Field(description="Held-out metrics, logged to MLflow.")
    dataset_digest: str = Field(
        description="sha256 of the canonical serialisation of the training data."
    )
    dataset_description: str = Field(description="One line: what the data is, its size.")
    reference_profile: DataProfile = Field(
        description="Profile of the training inputs, the reference for drift detection."
    )
    intended_use: str = Field(description="For the model card.")
    limitations: str = Field(description="For the model card.")
