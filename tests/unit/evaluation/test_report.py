"""EvalReport: metric names, latency vs quality metrics, a JSON round trip with inf."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from evaluation.report import EvalReport
from evaluation.suites import suite_for
from paved.errors import InvalidInput, InvalidName

pytestmark = pytest.mark.unit


def _report(metrics: dict[str, float]) -> EvalReport:
    return EvalReport(
        suite="tiny-gpt-offline",
        suite_version=1,
        model="tiny-gpt",
        version=3,
        model_digest="sha256:" + "0" * 64,
        task="text-generation",
        metrics=metrics,
        samples={"prompts": 79},
        dataset="test",
        dataset_digest="sha256:" + "1" * 64,
    )


def test_round_trips_through_json_even_with_an_infinite_perplexity() -> None:
    report = _report({"perplexity": math.inf, "exact_match": 0.5, "greedy_latency_p50_ms": 3.0})
    again = EvalReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert again.ref == "tiny-gpt/3"
    assert again.quality_metrics() == {"perplexity": math.inf, "exact_match": 0.5}


@pytest.mark.parametrize("name", ["AUC", "auc score", "paved.eval.auc", "a" * 65, "1st"])
def test_metric_names_must_be_safe_mlflow_keys(name: str) -> None:
    with pytest.raises(ValidationError):
        _report({name: 1.0})


def test_refuses_unknown_fields_and_bad_model_names() -> None:
    with pytest.raises(ValidationError):
        EvalReport.model_validate({**_report({}).model_dump(), "extra": 1})
    with pytest.raises(InvalidName):  # paved.names raises its own error, with the rule
        EvalReport.model_validate({**_report({}).model_dump(), "model": "../x"})


def test_no_suite_for_an_unknown_task() -> None:
    with pytest.raises(InvalidInput) as exc:
        suite_for("image-segmentation")
    assert exc.value.rule == "suite_task"
