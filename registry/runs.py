"""Logging a model package as an MLflow run: params, metrics, lineage tags, artifacts.

The run's artifact location is generated from the registry's own artifact root; the
caller only names a local directory, which is checked (admitted formats only, by
content; no code, no pickles, no remote code, no special files) and hashed before the
run is created: a refused package leaves no run, artifact or tag.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from paved.names import validate_name
from paved.schemas import Actor
from registry import schemas as s
from registry.card import CardFacts, render_card
from registry.digests import DigestManifest
from registry.safety import check_model_dir
from registry.store import ModelStore

RUN_TAG_LIMIT = 8000


def log_package(
    store: ModelStore, package: s.ModelPackage, *, experiment: str, actor: Actor
) -> s.LoggedRun:
    """Create a finished run holding the package."""
    validate_name(package.team, "team")
    # One read of every file: the bytes admitted are the bytes hashed.
    manifest = check_model_dir(package.model_dir)
    params = {k: str(v) for k, v in package.params.items()}
    card = render_card(
        CardFacts(
            title=package.kind or package.model_dir.name,
            team=package.team,
            task=package.task,
            framework=package.framework,
            git_commit=package.git_commit,
            dataset_digest=package.dataset_digest,
            dataset_description=package.dataset_description,
            intended_use=package.intended_use,
            limitations=package.limitations,
            params=params,
            metrics=package.metrics,
        )
    )
    tags = {
        s.TAG_TEAM: package.team,
        s.TAG_TASK: package.task,
        s.TAG_FRAMEWORK: package.framework,
        s.TAG_GIT_COMMIT: package.git_commit,
        s.TAG_DATASET_DIGEST: package.dataset_digest,
        s.TAG_DIGEST: manifest.digest,
        **manifest_tag(manifest),
        "mlflow.user": actor.identity,
        "mlflow.note.content": card,
    }
    if package.kind:
        tags[s.TAG_KIND] = package.kind

    experiment_id = store.ensure_experiment(experiment)
    run_id = store.create_run(experiment_id, package.kind or "model", tags)
    try:
        store.log_run_data(run_id, params, package.metrics)
        store.log_artifacts(run_id, package.model_dir, s.MODEL_ARTIFACT_PATH)
        with tempfile.TemporaryDirectory() as tmp:
            meta = Path(tmp)
            (meta / s.DIGESTS_FILE).write_text(manifest.canonical_json())
            (meta / s.CARD_FILE).write_text(card)
            if package.reference_profile is not None:
                (meta / s.PROFILE_FILE).write_text(
                    json.dumps(package.reference_profile.model_dump(), indent=1)
                )
            store.log_artifacts(run_id, meta, s.META_ARTIFACT_PATH)
    except Exception:
        store.end_run(run_id, "FAILED")
        raise
    store.end_run(run_id, "FINISHED")
    run = store.get_run(run_id)
    artifact_uri = run.artifact_uri if run else ""
    lineage = {k: v for k, v in tags.items() if k.startswith(s.TAG_PREFIX)}
    lineage["mlflow.note.content"] = card
    return s.LoggedRun(run_id=run_id, artifact_uri=artifact_uri, tags=lineage, manifest=manifest)


def manifest_tag(manifest: DigestManifest) -> dict[str, str]:
    """The manifest as a run tag when it fits MLflow's run-tag limit (8,000 characters).

    Larger manifests (sharded models) stay only in the run's artifacts.
    """
    text = manifest.canonical_json()
    return {s.TAG_DIGESTS: text} if len(text) <= RUN_TAG_LIMIT else {}
