"""The result of one offline evaluation: what the gate compares and MLflow records.

A report is self-describing so that two of them can be judged comparable without
re-running anything: which suite (name and version) produced it, on which data
(its digest and size), for which model version and digest.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from paved.names import ModelName

_METRIC_RE = re.compile(r"[a-z][a-z0-9_]*")
MAX_METRIC_NAME = 64


def validate_metric_name(name: str) -> str:
    """Metric names become MLflow keys and tag suffixes: ``[a-z][a-z0-9_]*``, max 64."""
    if len(name) > MAX_METRIC_NAME or not _METRIC_RE.fullmatch(name):
        raise ValueError(
            f"metric name {name!r} must match [a-z][a-z0-9_]* and be at most "
            f"{MAX_METRIC_NAME} characters"
        )
    return name


MetricName = Annotated[str, AfterValidator(validate_metric_name)]

# Latency is measured, not computed: it varies between runs and machines, unlike
# every other metric a suite reports. Gates and determinism checks can tell them apart.
LATENCY_SUFFIX = "_ms"


class EvalReport(BaseModel):
    """One suite's metrics for one model version."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    suite: str = Field(description="Suite name, e.g. 'credit-risk-offline'.")
    suite_version: int = Field(ge=1, description="Bumped whenever the suite's numbers change.")
    model: ModelName = Field(description="Registered model name.")
    version: int = Field(ge=1, description="Registered model version.")
    model_digest: str = Field(description="Digest of the verified files the suite ran on.")
    task: str = Field(description="The version's lineage task.")
    metrics: dict[MetricName, float] = Field(
        description="Metric name to value; names ending in '_ms' are measured latencies."
    )
    samples: dict[str, int] = Field(
        description="How many examples, prompts or batches each metric group used."
    )
    dataset: str = Field(description="One line: what the evaluation data is.")
    dataset_digest: str = Field(description="sha256 of the evaluation data's canonical bytes.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="The suite's settings (seed, rows, threads, ...)."
    )

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    def quality_metrics(self) -> dict[str, float]:
        """The deterministic metrics: everything except measured latencies."""
        return {k: v for k, v in self.metrics.items() if not k.endswith(LATENCY_SUFFIX)}

    def metric(self, name: str) -> float | None:
        """A metric's value, or None when the report lacks it or it is NaN."""
        value = self.metrics.get(name)
        return None if value is None or math.isnan(value) else value
