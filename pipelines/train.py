"""Train a bundled model, log the run to MLflow and optionally register it."""

from __future__ import annotations

import importlib
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from paved.errors import InvalidInput
from paved.names import validate_name
from paved.schemas import Actor
from pipelines.lineage import code_version
from pipelines.trainers.base import TrainResult
from registry.schemas import ModelPackage, ModelVersionInfo
from registry.service import Registry

Kind = Literal["tiny-gpt", "credit-risk"]
KINDS: dict[str, str] = {
    "tiny-gpt": "pipelines.trainers.tiny_gpt",
    "credit-risk": "pipelines.trainers.credit_risk",
}


class Trainer(Protocol):
    def __call__(self, out_dir: Path, *, seed: int = 0, **options: Any) -> TrainResult: ...


class TrainOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    seed: int
    run_id: str
    metrics: dict[str, float]
    version: ModelVersionInfo | None = None


def trainer_for(kind: str) -> Trainer:
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown model kind {kind!r}; bundled kinds: {', '.join(KINDS)}", rule="model_kind"
        )
    module = importlib.import_module(KINDS[kind])
    train: Trainer = module.train
    return train


def to_package(result: TrainResult, *, team: str) -> ModelPackage:
    return ModelPackage(
        model_dir=result.model_dir,
        team=team,
        task=result.task,
        framework=result.framework,
        kind=result.kind,
        git_commit=code_version(),
        dataset_digest=result.dataset_digest,
        dataset_description=result.dataset_description,
        params=result.params,
        metrics=result.metrics,
        reference_profile=result.reference_profile,
        intended_use=result.intended_use,
        limitations=result.limitations,
    )


def train_and_log(
    kind: str,
    *,
    registry: Registry,
    work_dir: Path,
    actor: Actor,
    team: str,
    seed: int = 0,
    register_as: str | None = None,
    **options: Any,
) -> TrainOutcome:
    """Train ``kind``; log params, metrics and artifacts; register as ``register_as``.

    Names, the role and the model's owner are checked before training starts, so a
    refused registration costs no training time and writes nothing.
    """
    validate_name(team, "team")
    if register_as is not None:
        register_as = registry.check_can_register(register_as, team, actor)
    if not 0 <= seed < 2**32:
        raise InvalidInput(f"seed {seed} is outside 0..2^32-1", rule="seed_range")
    train = trainer_for(kind)
    out_dir = work_dir / f"{kind}-{seed}-{uuid.uuid4().hex[:8]}"
    try:
        result = train(out_dir, seed=seed, **options)
        logged = registry.log_package(
            to_package(result, team=team), experiment=f"paved/{kind}", actor=actor
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    version = registry.register_run(register_as, logged, actor=actor) if register_as else None
    return TrainOutcome(
        kind=kind, seed=seed, run_id=logged.run_id, metrics=result.metrics, version=version
    )
