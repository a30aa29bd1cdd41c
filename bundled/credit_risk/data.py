"""A generated, realistic credit dataset for the credit-risk model.

Nothing is downloaded: the data is drawn from a seeded numpy ``Generator`` with a
causal story a credit analyst would recognise. Age drives employment (retirement)
and credit history; income depends on age, employment and region; home ownership
on age and income; the loan amount grows with income and depends on its purpose;
debt-to-income includes the new loan's payment. Default follows a logistic model
with main effects, interactions (debt load hurts the self-employed more, a prior
default makes high utilisation worse, large loans hurt the young) and noise, with
a base rate around 20%. The same ``(rows, seed)`` always gives the same bytes,
which is what makes :func:`dataset_digest` a usable lineage record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from bundled.credit_risk.features import FeatureKind

DEFAULT_ROWS = 20_000
MIN_ROWS = 100
LABEL = "default"
CANONICAL_MAGIC = b"pavedpath-credit-dataset/v1\n"

EMPLOYMENT = ("salaried", "self_employed", "contract", "unemployed", "retired")
PURPOSE = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "car",
    "education",
    "medical",
    "small_business",
    "other",
)
HOME = ("own", "mortgage", "rent", "other")
REGION = ("north", "south", "east", "west", "central")

Array = npt.NDArray[Any]
Floats = npt.NDArray[np.float64]


class FeatureDescription(BaseModel):
    """What one generated column is, for humans (model card) and for the trainer (kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FeatureKind
    description: str
    unit: str | None = None
    categories: tuple[str, ...] = Field(default=(), description="Categorical: values drawn.")


FEATURES: tuple[FeatureDescription, ...] = (
    FeatureDescription(name="age", kind="numeric", description="Applicant age", unit="years"),
    FeatureDescription(
        name="annual_income", kind="numeric", description="Gross annual income", unit="USD"
    ),
    FeatureDescription(
        name="loan_amount", kind="numeric", description="Requested principal", unit="USD"
    ),
    FeatureDescription(
        name="loan_term_months", kind="numeric", description="36 or 60", unit="months"
    ),
    FeatureDescription(
        name="debt_to_income",
        kind="numeric",
        description="Monthly debt payments including the new loan / monthly income",
        unit="ratio",
    ),
    FeatureDescription(
        name="credit_history_months",
        kind="numeric",
        description="Age of the oldest credit line",
        unit="months",
    ),
    FeatureDescription(
        name="num_open_accounts", kind="numeric", description="Open credit lines", unit="count"
    ),
    FeatureDescription(
        name="credit_utilization",
        kind="numeric",
        description="Revolving balance / revolving limit (may exceed 1)",
        unit="ratio",
    ),
    FeatureDescription(
        name="num_delinquencies_2y",
        kind="numeric",
        description="30+ days late payments in the last 2 years",
        unit="count",
    ),
    FeatureDescription(
        name="num_inquiries_6m",
        kind="numeric",
        description="Hard credit inquiries in the last 6 months",
        unit="count",
    ),
    FeatureDescription(
        name="employment_type", kind="categorical", description="Employment", categories=EMPLOYMENT
    ),
    FeatureDescription(
        name="loan_purpose", kind="categorical", description="Stated purpose", categories=PURPOSE
    ),
    FeatureDescription(
        name="home_ownership", kind="categorical", description="Housing", categories=HOME
    ),
    FeatureDescription(
        name="region", kind="categorical", description="Sales region", categories=REGION
    ),
    FeatureDescription(
        name="has_mortgage", kind="binary", description="Carries a mortgage (any property)"
    ),
    FeatureDescription(
        name="prior_default", kind="binary", description="Any earlier default on record"
    ),
)

FEATURE_KINDS: dict[str, FeatureKind] = {f.name: f.kind for f in FEATURES}


@dataclass(frozen=True)
class CreditFrame:
    """A slice of the dataset: one numpy array per feature, the label and stable row ids.

    Numeric columns are float64, categorical ones unicode strings, binary ones bool,
    the label int64 0/1 (1 = defaulted).
    """

    row_id: npt.NDArray[np.int64]
    columns: Mapping[str, Array]
    label: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.row_id.shape[0])

    def take(self, index: npt.NDArray[np.intp]) -> CreditFrame:
        return CreditFrame(
            row_id=self.row_id[index],
            columns={k: v[index] for k, v in self.columns.items()},
            label=self.label[index],
        )

    def to_rows(self) -> list[dict[str, object]]:
        """Rows as plain Python values: what a client would send to ``predict_proba``."""
        lists = {k: v.tolist() for k, v in self.columns.items()}
        return [{k: col[i] for k, col in lists.items()} for i in range(len(self))]


@dataclass(frozen=True)
class CreditSplits:
    train: CreditFrame
    validation: CreditFrame
    test: CreditFrame


def _sigmoid(z: Floats) -> Floats:
    out: Floats = 1.0 / (1.0 + np.exp(-z))
    return out


def _draw(rng: np.random.Generator, weights: Floats, values: tuple[str, ...]) -> Array:
    """One category per row from per-row (unnormalised) weights, shape ``[n, k]``."""
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(size=int(weights.shape[0]))
    idx = np.minimum((u[:, None] > cdf).sum(axis=1), len(values) - 1)
    out: Array = np.asarray(values)[idx]
    return out


def _effect(column: Array, table: Mapping[str, float]) -> Floats:
    """Per-row additive effect of a categorical column."""
    out = np.zeros(column.shape[0])
    for value, weight in table.items():
        out[column == value] = weight
    return out


def generate(rows: int = DEFAULT_ROWS, *, seed: int = 0) -> CreditFrame:
    """Draw ``rows`` applicants and their default outcome, deterministically from ``seed``."""
    if rows < MIN_ROWS:
        raise ValueError(f"rows must be at least {MIN_ROWS}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n = rows
    age = np.clip(np.round(rng.normal(41.0, 12.0, n)), 21, 75)
    region = _draw(rng, np.tile([0.22, 0.2, 0.2, 0.18, 0.2], (n, 1)), REGION)

    retired = 0.01 + 2.0 * _sigmoid((age - 63.0) / 2.5)
    emp_w = np.column_stack(
        [np.full(n, 0.62), np.full(n, 0.13), np.full(n, 0.12), np.full(n, 0.06), retired]
    )
    employment = _draw(rng, emp_w, EMPLOYMENT)

    income_sigma = np.where(employment == "self_employed", 0.6, 0.4)
    log_income = (
        10.75
        + 0.35 * np.exp(-(((age - 50.0) / 18.0) ** 2))
        + _effect(
            employment,
            {"self_employed": 0.1, "contract": -0.1, "unemployed": -0.9, "retired": -0.35},
        )
        + _effect(region, {"north": 0.05, "south": -0.1, "west": 0.12, "central": -0.03})
        + rng.normal(0.0, 1.0, n) * income_sigma
    )
    annual_income = np.clip(np.round(np.exp(log_income), -2), 8_000.0, 500_000.0)
    log_income = np.log(annual_income)

    history = np.round((age - 18.0) * 12.0 * rng.beta(2.5, 1.5, n))
    years = age - 21.0
    home_logits = np.column_stack(
        [
            -2.5 + 0.06 * years,
            -1.0 + 1.2 * (log_income - 10.8) + 0.06 * years - 0.0012 * years**2,
            np.full(n, 0.5),
            np.full(n, -2.5),
        ]
    )
    home = _draw(rng, np.exp(home_logits), HOME)
    mortgage_p = np.select(
        [home == "mortgage", home == "own", home == "rent"], [0.97, 0.08, 0.03], 0.02
    )
    has_mortgage = rng.random(n) < mortgage_p

    purpose_w = np.tile([0.34, 0.16, 0.12, 0.12, 0.06, 0.06, 0.06, 0.08], (n, 1))
    purpose_w[:, 2] *= np.where(np.isin(home, ["own", "mortgage"]), 2.5, 0.3)
    purpose_w[:, 4] *= np.where(age < 30, 3.0, 1.0)
    purpose = _draw(rng, purpose_w, PURPOSE)

    log_loan = (
        3.3
        + 0.55 * log_income
        + _effect(
            purpose,
            {
                "debt_consolidation": 0.1,
                "credit_card": -0.3,
                "home_improvement": 0.3,
                "car": 0.05,
                "medical": -0.4,
                "small_business": 0.5,
                "other": -0.3,
            },
        )
        + rng.normal(0.0, 0.45, n)
    )
    loan_amount = np.clip(np.round(np.exp(log_loan) / 50.0) * 50.0, 1_000.0, 150_000.0)
    term = np.where(rng.random(n) < _sigmoid((np.log(loan_amount) - 9.6) * 1.5), 60.0, 36.0)

    monthly_rate = 0.12 / 12.0
    payment = loan_amount * monthly_rate / (1.0 - (1.0 + monthly_rate) ** -term)
    existing = rng.beta(2.0, 6.0, n) * 0.6
    dti = np.clip(np.round(existing + payment * 12.0 / annual_income, 3), 0.0, 1.5)

    open_accounts = np.minimum(rng.poisson(1.5 + history / 40.0), 40).astype(np.float64)
    utilization = np.clip(np.round(rng.beta(2.0, 3.5, n) + 0.08 * (10.9 - log_income), 3), 0.0, 1.2)
    prior_default = rng.random(n) < _sigmoid(
        -3.0 - 0.6 * (log_income - 10.9) + 0.8 * (employment == "unemployed") - 0.01 * (age - 40.0)
    )
    delinquencies = rng.poisson(0.25 + 1.2 * prior_default + 0.5 * utilization).astype(np.float64)
    inquiries = rng.poisson(0.7 + 1.0 * utilization).astype(np.float64)

    risky_job = np.isin(employment, ["self_employed", "contract"])
    z = (
        -2.3
        + 2.6 * (dti - 0.3)
        + 1.8 * (utilization - 0.35)
        + 1.1 * prior_default
        + 0.35 * delinquencies
        + 0.18 * inquiries
        - 0.55 * (log_income - 10.9)
        - 0.004 * (history - 170.0)
        + 0.025 * np.maximum(0.0, 30.0 - age)
        + 0.25 * (term == 60.0)
        + _effect(
            employment,
            {"self_employed": 0.25, "contract": 0.35, "unemployed": 0.9, "retired": 0.1},
        )
        + _effect(
            purpose,
            {
                "debt_consolidation": 0.15,
                "credit_card": 0.1,
                "home_improvement": -0.25,
                "car": -0.2,
                "education": 0.2,
                "medical": 0.35,
                "small_business": 0.6,
                "other": 0.05,
            },
        )
        + _effect(home, {"own": -0.3, "mortgage": -0.15, "rent": 0.1, "other": 0.2})
        + _effect(region, {"north": -0.05, "south": 0.15, "west": -0.1, "central": 0.05})
        + 1.5 * (dti - 0.3) * risky_job
        + 1.2 * prior_default * (utilization - 0.35)
        + 2.0 * (loan_amount / annual_income - 0.2) * (age < 30)
        + rng.normal(0.0, 0.5, n)
    )
    label = (rng.random(n) < _sigmoid(z)).astype(np.int64)

    columns: dict[str, Array] = {
        "age": age,
        "annual_income": annual_income,
        "loan_amount": loan_amount,
        "loan_term_months": term,
        "debt_to_income": dti,
        "credit_history_months": history,
        "num_open_accounts": open_accounts,
        "credit_utilization": utilization,
        "num_delinquencies_2y": delinquencies,
        "num_inquiries_6m": inquiries,
        "employment_type": employment,
        "loan_purpose": purpose,
        "home_ownership": home,
        "region": region,
        "has_mortgage": has_mortgage,
        "prior_default": prior_default,
    }
    return CreditFrame(row_id=np.arange(n, dtype=np.int64), columns=columns, label=label)


def split(
    frame: CreditFrame, *, seed: int = 0, validation: float = 0.15, test: float = 0.15
) -> CreditSplits:
    """Random disjoint train/validation/test split, deterministic from ``seed``."""
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError("validation and test fractions must be in (0, 1) and sum below 1")
    order = np.random.default_rng(np.random.SeedSequence([seed, 1])).permutation(len(frame))
    n_val = round(len(frame) * validation)
    n_test = round(len(frame) * test)
    return CreditSplits(
        train=frame.take(np.sort(order[n_val + n_test :])),
        validation=frame.take(np.sort(order[:n_val])),
        test=frame.take(np.sort(order[n_val : n_val + n_test])),
    )


def make_splits(rows: int = DEFAULT_ROWS, *, seed: int = 0) -> CreditSplits:
    """Generate and split in one step, both from ``seed``."""
    return split(generate(rows, seed=seed), seed=seed)


def canonical_bytes(frame: CreditFrame) -> bytes:
    """A platform-independent serialisation: JSON header, then fixed-width columns.

    Numerics are little-endian float64, categoricals uint8 codes into the declared
    category list, binaries and the label uint8, row ids little-endian int64, in
    :data:`FEATURES` order; so equal data always gives equal bytes.
    """
    header = {
        "rows": len(frame),
        "columns": [[f.name, f.kind, list(f.categories)] for f in FEATURES],
        "label": LABEL,
    }
    parts = [CANONICAL_MAGIC, json.dumps(header, sort_keys=True, separators=(",", ":")).encode()]
    parts.append(frame.row_id.astype("<i8").tobytes())
    for f in FEATURES:
        values = frame.columns[f.name]
        if f.kind == "numeric":
            parts.append(values.astype("<f8").tobytes())
        elif f.kind == "categorical":
            codes = {c: i for i, c in enumerate(f.categories)}
            parts.append(np.fromiter((codes[v] for v in values.tolist()), dtype=np.uint8).tobytes())
        else:
            parts.append(values.astype(np.uint8).tobytes())
    parts.append(frame.label.astype(np.uint8).tobytes())
    return b"".join(parts)


def dataset_digest(splits: CreditSplits) -> str:
    """``sha256:<hex>`` over the three splits in order, so the split is part of lineage."""
    h = hashlib.sha256()
    for name, frame in (
        ("train", splits.train),
        ("validation", splits.validation),
        ("test", splits.test),
    ):
        data = canonical_bytes(frame)
        h.update(f"{name}:{len(data)}\n".encode())
        h.update(data)
    return "sha256:" + h.hexdigest()


def describe(rows: int, seed: int) -> str:
    """One line for the registry's dataset description."""
    kinds = [f.kind for f in FEATURES]
    counts = ", ".join(f"{kinds.count(k)} {k}" for k in ("numeric", "categorical", "binary"))
    return (
        f"Generated consumer-credit applications (pavedpath credit_data v1, seed {seed}): "
        f"{rows} rows, {len(FEATURES)} features ({counts}), label '{LABEL}', split 70/15/15"
    )
