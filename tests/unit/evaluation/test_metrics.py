"""Shared metrics: the classifier metrics moved from the trainer, perplexity, latency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import metrics
from evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    latency_percentiles,
    perplexity,
    roc_auc,
)
from pipelines.trainers import credit_risk

pytestmark = pytest.mark.unit


def test_the_trainer_logs_with_the_same_functions_the_suites_use() -> None:
    # One implementation: what registration logs and what a gate compares cannot drift.
    trainer = vars(credit_risk)
    assert trainer["classification_metrics"] is metrics.classification_metrics
    assert trainer["log_loss"] is metrics.log_loss


def _mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half, by brute force."""
    pos = scores[labels == 1][:, None]
    neg = scores[labels == 0][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


@pytest.mark.parametrize("seed", range(8))
def test_roc_auc_matches_mann_whitney_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    labels = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.int64)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(n) + 0.3 * labels, decimals=int(rng.integers(1, 4)))
    assert roc_auc(labels, scores) == pytest.approx(_mann_whitney_auc(labels, scores), abs=1e-12)


def test_roc_auc_edge_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


def test_calibration_and_loss_metrics_on_known_values() -> None:
    labels = np.array([1.0] * 20 + [0.0] * 80)
    constant = np.full(100, 0.2)
    assert expected_calibration_error(labels, constant) == pytest.approx(0.0)
    m = classification_metrics(labels, constant)
    assert m["brier"] == pytest.approx(0.2 * 0.8)
    assert m["log_loss"] == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)))
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["auc"] == 0.5
    # Predicting 0.6 for a group that defaults 20% of the time is off by 0.4.
    assert expected_calibration_error(labels, np.full(100, 0.6)) == pytest.approx(0.4)


def test_perplexity_is_exp_of_mean_nll_and_overflows_to_inf() -> None:
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="at least one token"):
        perplexity(1.0, 0)


def test_latency_percentiles_are_milliseconds() -> None:
    out = latency_percentiles([0.001 * i for i in range(1, 101)], prefix="batch_latency")
    assert out == {
        "batch_latency_p50_ms": pytest.approx(50.5),
        "batch_latency_p95_ms": pytest.approx(95.05),
    }
    with pytest.raises(ValueError, match="at least one sample"):
        latency_percentiles([])
