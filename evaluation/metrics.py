"""Metric functions shared by the trainers, the offline suites and the gates.

They live here, not in a trainer, so that the number a trainer logs at registration
and the number an offline suite computes later for the promotion gate come from the
same code. Everything is plain numpy or math on arrays the caller supplies: no
models, no I/O, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve by the trapezoidal rule over distinct score thresholds.

    Tied scores form one step of the curve (counted as half a win, as Mann-Whitney
    does). Undefined without both classes, so that raises instead of returning 0.5.
    """
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    positives = float(y.sum())
    negatives = float(y.size - positives)
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both classes")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tpr = np.r_[0.0, np.cumsum(y)[last_of_group] / positives]
    fpr = np.r_[0.0, np.cumsum(1.0 - y)[last_of_group] / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def log_loss(labels: Floats, probs: Floats, eps: float = 1e-7) -> float:
    p = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


def expected_calibration_error(labels: Floats, probs: Floats, bins: int = 10) -> float:
    """Mean |observed rate - mean prediction| over equal-width bins, weighted by bin size."""
    idx = np.minimum((probs * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - probs[mask].mean())
    return float(total / labels.size)


def classification_metrics(labels: Floats, probs: Floats) -> dict[str, float]:
    """Held-out metrics the registry logs and promotion gates compare."""
    return {
        "auc": roc_auc(labels, probs),
        "accuracy": float(np.mean((probs >= 0.5) == (labels == 1))),
        "log_loss": log_loss(labels, probs),
        "brier": float(np.mean((probs - labels) ** 2)),
        "ece": expected_calibration_error(labels, probs),
        "base_rate": float(labels.mean()),
    }


def perplexity(total_nll: float, tokens: int) -> float:
    """``exp`` of the mean negative log-likelihood per token (nats).

    An untrained or broken model can have a mean NLL beyond what ``exp`` can hold;
    that is reported as ``inf`` (a gate then fails it) instead of raising.
    """
    if tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    mean = total_nll / tokens
    return math.exp(mean) if mean < 709.0 else math.inf


def latency_percentiles(seconds: Sequence[float], prefix: str = "latency") -> dict[str, float]:
    """p50 and p95 of measured durations, in milliseconds (linear interpolation)."""
    if not seconds:
        raise ValueError("latency percentiles need at least one sample")
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95 = np.percentile(ms, [50.0, 95.0])
    return {f"{prefix}_p50_ms": float(p50), f"{prefix}_p95_ms": float(p95)}
