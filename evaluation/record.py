"""Evaluation records in MLflow: one run per evaluation, the latest one on the version.

Each evaluation becomes a run in the experiment ``paved/eval/<model>``, with the
suite's settings as params, its metrics as metrics, the model name, version and
digest as tags, and the full report as an artifact. The model version then carries
the latest result as tags, ``paved.eval.<metric>`` per metric (what the MLflow UI
shows beside the version) and the whole report as JSON under ``paved.eval_report``,
which :func:`latest_eval` reads back, so a gate never has to re-run a suite to know
how a champion scored.

Only these small functions touch the registry's store for evaluation data; the
tags are written after the run is complete, so a version never points at a run
that failed half way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from evaluation.report import EvalReport
from paved.errors import BackendError, InvalidInput, NotFound, PermissionDenied
from paved.names import validate_name, validate_version
from paved.schemas import Actor, Role
from registry.schemas import TAG_DIGEST

if TYPE_CHECKING:
    from registry.service import Registry

EXPERIMENT_PREFIX: Final = "paved/eval/"
METRIC_TAG_PREFIX: Final = "paved.eval."  # + metric name, on the model version
TAG_REPORT: Final = "paved.eval_report"  # the latest report's JSON, on the model version
TAG_RUN: Final = "paved.eval_run"  # the run that produced it, on the model version
REPORT_ARTIFACT_DIR: Final = "paved"
REPORT_FILE: Final = "eval_report.json"
RECORD_ROLES: Final = (Role.ML_ENGINEER, Role.PROMOTION)


class RecordedEval(BaseModel):
    """A report as recorded: where to find its run in MLflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    experiment: str
    report: EvalReport


def experiment_name(model: str) -> str:
    return EXPERIMENT_PREFIX + validate_name(model)


def record_eval(registry: Registry, report: EvalReport, *, actor: Actor) -> RecordedEval:
    """Log ``report`` as an MLflow run and make it the version's latest evaluation."""
    if not any(actor.has(r) for r in RECORD_ROLES):
        raise PermissionDenied(
            f"{actor.identity} may not record an evaluation: the role 'ml-engineer' is needed",
            rule="role",
        )
    store = registry.store
    stored = store.get_version(report.model, report.version)
    if stored is None:
        raise NotFound(f"model version {report.ref} does not exist")
    if stored.tags.get(TAG_DIGEST) != report.model_digest:
        raise InvalidInput(
            f"the report is for files with digest {report.model_digest[:19]}…, but {report.ref} "
            f"is registered with {stored.tags.get(TAG_DIGEST, 'none')[:19]}…",
            rule="eval_digest",
        )
    experiment = experiment_name(report.model)
    run_id = store.create_run(
        store.ensure_experiment(experiment),
        f"{report.model}-v{report.version}-{report.suite}",
        {
            "paved.eval.model": report.model,
            "paved.eval.version": str(report.version),
            "paved.eval.model_digest": report.model_digest,
            "paved.eval.suite": f"{report.suite}/{report.suite_version}",
            "paved.eval.dataset_digest": report.dataset_digest,
            "paved.eval.by": actor.identity,
        },
    )
    try:
        store.log_run_data(run_id, _params(report), report.metrics)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / REPORT_FILE).write_text(report.model_dump_json(indent=2) + "\n")
            store.log_artifacts(run_id, Path(tmp), REPORT_ARTIFACT_DIR)
        tags = {METRIC_TAG_PREFIX + k: repr(float(v)) for k, v in report.metrics.items()}
        tags[TAG_REPORT] = report.model_dump_json()
        tags[TAG_RUN] = run_id
        stale = [k for k in stored.tags if k.startswith(METRIC_TAG_PREFIX) and k not in tags]
        store.set_version_tags(report.model, report.version, tags, remove=stale)
    except Exception as exc:
        store.end_run(run_id, "FAILED")
        raise BackendError(f"could not record the evaluation of {report.ref}: {exc}") from exc
    store.end_run(run_id, "FINISHED")
    return RecordedEval(run_id=run_id, experiment=experiment, report=report)


def latest_eval(registry: Registry, name: str, version: int | str) -> EvalReport | None:
    """The version's latest recorded evaluation, or None if it was never evaluated."""
    name, ver = validate_name(name), validate_version(version)
    stored = registry.store.get_version(name, ver)
    if stored is None:
        raise NotFound(f"model version {name}/{ver} does not exist")
    raw = stored.tags.get(TAG_REPORT)
    if raw is None:
        return None
    try:
        report = EvalReport.model_validate_json(raw)
    except ValidationError as exc:
        raise BackendError(f"{name}/{ver}'s recorded evaluation is not readable: {exc}") from exc
    if (report.model, report.version) != (name, ver):
        raise BackendError(
            f"{name}/{ver}'s recorded evaluation belongs to {report.ref}; re-run `paved eval`"
        )
    return report


def eval_metric_tags(registry: Registry, name: str, version: int | str) -> dict[str, float]:
    """The ``paved.eval.<metric>`` tags of a version as numbers (what the MLflow UI shows)."""
    name, ver = validate_name(name), validate_version(version)
    stored = registry.store.get_version(name, ver)
    if stored is None:
        raise NotFound(f"model version {name}/{ver} does not exist")
    out: dict[str, float] = {}
    for key, value in stored.tags.items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                out[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except ValueError:  # a tag someone set by hand; not an evaluation metric
                continue
    return out


def _params(report: EvalReport) -> dict[str, str]:
    params = {
        "suite": report.suite,
        "suite_version": str(report.suite_version),
        "dataset_digest": report.dataset_digest,
    }
    params.update({k: str(v) for k, v in report.params.items()})
    params.update({f"samples.{k}": str(v) for k, v in report.samples.items()})
    return params
