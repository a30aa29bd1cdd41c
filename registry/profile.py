"""Reference data profiles: a compact, JSON-serialisable summary of a model's inputs.

A profile is recorded at registration and is what drift detection compares live
traffic against, per feature: histograms over fixed bin edges for numeric features,
frequencies for categorical and binary ones, and for text the prompt-length
histogram and the frequency of the most common tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class NumericProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["numeric"] = "numeric"
    bin_edges: list[float] = Field(
        description="Quantile edges; values outside fall in the end bins."
    )
    counts: list[int] = Field(description="Counts per bin; len(bin_edges) - 1 bins.")
    mean: float
    std: float
    min: float
    max: float


class CategoricalProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, int] = Field(description="Count per category seen in training.")


FeatureProfile = NumericProfile | CategoricalProfile


class DataProfile(BaseModel):
    """Per-feature profile of the training inputs."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(ge=0)
    features: dict[str, NumericProfile | CategoricalProfile]


def numeric_profile(values: Sequence[float] | np.ndarray, bins: int = 10) -> NumericProfile:
    """Histogram over quantile bin edges (deduplicated for discrete-valued columns)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("cannot profile an empty column")
    edges = np.unique(np.quantile(arr, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    counts, _ = np.histogram(np.clip(arr, edges[0], edges[-1]), bins=edges)
    return NumericProfile(
        bin_edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        mean=float(arr.mean()),
        std=float(arr.std()),
        min=float(arr.min()),
        max=float(arr.max()),
    )


def categorical_profile(values: Sequence[object]) -> CategoricalProfile:
    freq: dict[str, int] = {}
    for v in values:
        key = str(v)
        freq[key] = freq.get(key, 0) + 1
    return CategoricalProfile(frequencies=dict(sorted(freq.items())))
