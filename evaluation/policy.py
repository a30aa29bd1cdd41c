"""Gate policies: which metrics a promotion gate checks, and how strictly.

A policy is data, written in YAML or JSON beside the manifests and validated by
:class:`GatePolicy` (unknown keys refused; its JSON Schema is exported for editors
and CI). Each rule names a metric, which direction is better, how far a candidate
may fall behind the champion (in the metric's units, or as a ratio of the
champion's value) and optional absolute bounds. ``default_policy`` is what a task
gets when nobody wrote one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluation.report import MetricName
from paved.errors import InvalidInput
from paved.kinds import kind_of


class GateRule(BaseModel):
    """One metric's constraints: against the champion, and/or absolute bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName = Field(description="Metric name as the evaluation report has it.")
    higher_is_better: bool = Field(description="True for auc or exact_match, False for ece.")
    max_regression: float | None = Field(
        default=None,
        ge=0,
        description="How much worse than the champion the candidate may be, in the "
        "metric's own units (0.01 = one hundredth of AUC).",
    )
    max_regression_ratio: float | None = Field(
        default=None,
        ge=0,
        description="How much worse than the champion the candidate may be, as a "
        "fraction of the champion's value (0.05 = 5%).",
    )
    min: float | None = Field(default=None, description="Absolute lower bound (inclusive).")
    max: float | None = Field(default=None, description="Absolute upper bound (inclusive).")

    @model_validator(mode="after")
    def _one_margin_and_something_to_check(self) -> GateRule:
        if self.max_regression is not None and self.max_regression_ratio is not None:
            raise ValueError("give max_regression or max_regression_ratio, not both")
        if all(
            v is None for v in (self.max_regression, self.max_regression_ratio, self.min, self.max)
        ):
            raise ValueError(
                "a rule needs max_regression, max_regression_ratio, min or max to check"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class GatePolicy(BaseModel):
    """A promotion gate: every rule must pass for a candidate to be promoted."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"title": "Pavedpath gate policy"}
    )

    rules: list[GateRule] = Field(default_factory=list, description="Checked in order.")
    require_digest_verified: bool = Field(
        default=True,
        description="The candidate's files must match their registered sha256 digests.",
    )
    require_same_dataset: bool = Field(
        default=False,
        description="Both reports must come from the same evaluation data (dataset digest). "
        "Off for tiny-gpt, whose held-out prompts follow each version's training seed.",
    )


# gate policy name (the kind table's ``gate_policy``) -> the policy
DEFAULT_POLICIES: Mapping[str, GatePolicy] = MappingProxyType(
    {
        "language-model": GatePolicy(
            rules=[
                GateRule(metric="perplexity", higher_is_better=False, max_regression_ratio=0.05),
                GateRule(metric="exact_match", higher_is_better=True, max_regression=0.02),
            ]
        ),
        "classifier": GatePolicy(
            rules=[
                GateRule(metric="auc", higher_is_better=True, max_regression=0.01),
                GateRule(metric="ece", higher_is_better=False, max_regression=0.02),
            ],
            require_same_dataset=True,
        ),
    }
)


def default_policy(task: str) -> GatePolicy:
    """The gate a task gets when nobody wrote one (its row in :mod:`paved.kinds`)."""
    kind = kind_of(task)
    if kind is None:
        raise InvalidInput(f"no default gate policy for task {task!r}", rule="gate_task")
    return DEFAULT_POLICIES[kind.gate_policy].model_copy(deep=True)  # the table stays as is


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of :class:`GatePolicy`, for editors and CI."""
    return GatePolicy.model_json_schema()


def load_policy(path: Path) -> GatePolicy:
    """Read a policy from a YAML or JSON file (JSON is YAML); refuse anything invalid."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return GatePolicy.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(f"gate policy {path} is not valid: {exc}", rule="gate_policy") from exc
