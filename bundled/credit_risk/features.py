"""What the credit-risk model takes as input: one :class:`FeatureSpec` per feature.

A spec is fitted once on the training split (normalisation stats for numerics,
the vocabulary for categoricals) and saved in ``config.json``, so serving encodes
exactly as training did. Each kind maps to one KServe v2 datatype: FP32 for
numeric, BYTES for categorical, BOOL for binary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

FeatureKind = Literal["numeric", "categorical", "binary"]
V2Datatype = Literal["FP32", "BYTES", "BOOL"]
Transform = Literal["identity", "signed_log1p"]

OOV_INDEX = 0
"""Embedding row for values not seen in training; known values start at 1."""

Z_CLIP = 50.0
"""Standardised values are clipped so an absurd input cannot overflow float32."""

DATATYPES: dict[FeatureKind, V2Datatype] = {
    "numeric": "FP32",
    "categorical": "BYTES",
    "binary": "BOOL",
}


def apply_transform(x: npt.NDArray[np.float64], transform: Transform) -> npt.NDArray[np.float64]:
    """Compress heavy right tails (money) before standardising; sign-safe for negatives."""
    if transform == "signed_log1p":
        out: npt.NDArray[np.float64] = np.sign(x) * np.log1p(np.abs(x))
        return out
    return x


class FeatureSpec(BaseModel):
    """One model input: its kind and what encoding it needs, fitted on training data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Input name.")
    kind: FeatureKind
    transform: Transform = Field(
        default="identity",
        description="Numeric only: applied before standardising; signed_log1p for skewed money.",
    )
    mean: float | None = Field(default=None, description="Numeric only: mean after transform.")
    std: float | None = Field(default=None, gt=0, description="Numeric only: std after transform.")
    vocabulary: list[str] | None = Field(
        default=None,
        description="Categorical only: known values; value i maps to index i+1, unknown to 0.",
    )

    @model_validator(mode="after")
    def _fields_match_kind(self) -> FeatureSpec:
        if self.kind == "numeric":
            if self.mean is None or self.std is None:
                raise ValueError(f"numeric feature {self.name!r} needs mean and std")
            if not (math.isfinite(self.mean) and math.isfinite(self.std)):
                raise ValueError(f"numeric feature {self.name!r} has non-finite stats")
        elif self.mean is not None or self.std is not None or self.transform != "identity":
            raise ValueError(f"{self.kind} feature {self.name!r} takes no normalisation")
        if self.kind == "categorical":
            if not self.vocabulary:
                raise ValueError(f"categorical feature {self.name!r} needs a vocabulary")
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise ValueError(f"vocabulary of {self.name!r} has duplicates")
        elif self.vocabulary is not None:
            raise ValueError(f"{self.kind} feature {self.name!r} takes no vocabulary")
        return self

    @property
    def datatype(self) -> V2Datatype:
        """The KServe v2 tensor datatype a client sends for this feature."""
        return DATATYPES[self.kind]

    @property
    def cardinality(self) -> int:
        """Embedding rows: the vocabulary plus the out-of-vocabulary slot."""
        return len(self.vocabulary or ()) + 1

    def standardise(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """Numeric only: transform, z-score and clip to ±Z_CLIP, as float32."""
        if self.mean is None or self.std is None:
            raise TypeError(f"{self.kind} feature {self.name!r} is not numeric")
        z = (apply_transform(values, self.transform) - self.mean) / self.std
        return np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)


class TensorSpec(BaseModel):
    """One named KServe v2 tensor: what a client sends or receives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    datatype: V2Datatype
    shape: list[int] = Field(description="-1 marks the batch dimension.")


def fit_feature_specs(
    kinds: Mapping[str, FeatureKind],
    columns: Mapping[str, npt.NDArray[Any]],
    *,
    log_features: frozenset[str] = frozenset(),
) -> list[FeatureSpec]:
    """Fit normalisation stats and vocabularies on training columns, in ``kinds`` order."""
    specs: list[FeatureSpec] = []
    for name, kind in kinds.items():
        values = columns[name]
        if kind == "numeric":
            transform: Transform = "signed_log1p" if name in log_features else "identity"
            x = apply_transform(values.astype(np.float64), transform)
            std = float(x.std())
            specs.append(
                FeatureSpec(
                    name=name,
                    kind=kind,
                    transform=transform,
                    mean=float(x.mean()),
                    std=std if std > 0 else 1.0,
                )
            )
        elif kind == "categorical":
            vocabulary = sorted({str(v) for v in values.tolist()})
            specs.append(FeatureSpec(name=name, kind=kind, vocabulary=vocabulary))
        else:
            specs.append(FeatureSpec(name=name, kind=kind))
    return specs
