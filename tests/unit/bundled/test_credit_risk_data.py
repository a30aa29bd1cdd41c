"""credit-risk's bundled code: the generated dataset, and model code that never unpickles."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bundled.credit_risk import codec as credit_codec
from bundled.credit_risk import data as credit_data
from bundled.credit_risk import features as credit_features
from bundled.credit_risk import model as credit_risk
from bundled.credit_risk.data import FEATURE_KINDS, FEATURES, generate, make_splits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module", [credit_risk, credit_codec, credit_features, credit_data])
def test_model_code_imports_nothing_that_unpickles(module: ModuleType) -> None:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {str(n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "joblib", "dill", "cloudpickle"}
    calls = {
        f"{n.value.id}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    assert "torch.load" not in calls


# --- the generated dataset ---------------------------------------------------------------


@pytest.fixture(scope="module")
def full() -> credit_data.CreditFrame:
    return generate(seed=0)


def test_dataset_defaults_have_a_plausible_base_rate(full: credit_data.CreditFrame) -> None:
    assert len(full) == credit_data.DEFAULT_ROWS
    assert 0.15 <= full.label.mean() <= 0.25
    for seed in (1, 2):
        assert 0.15 <= generate(5_000, seed=seed).label.mean() <= 0.25


def test_dataset_columns_have_declared_types_and_values(full: credit_data.CreditFrame) -> None:
    assert list(full.columns) == [f.name for f in FEATURES]
    assert full.label.dtype == np.int64
    assert set(np.unique(full.label).tolist()) == {0, 1}
    for f in FEATURES:
        values = full.columns[f.name]
        assert values.shape == (len(full),)
        if f.kind == "numeric":
            assert values.dtype == np.float64
            assert np.isfinite(values).all()
            assert (values >= 0).all()
        elif f.kind == "categorical":
            assert values.dtype.kind == "U"
            assert set(values.tolist()) == set(f.categories)
        else:
            assert values.dtype == np.bool_
            assert 0.01 < values.mean() < 0.99


def test_dataset_has_realistic_correlations(full: credit_data.CreditFrame) -> None:
    c = full.columns
    income_vs_loan = np.corrcoef(np.log(c["annual_income"]), np.log(c["loan_amount"]))[0, 1]
    assert income_vs_loan > 0.3
    mortgage = c["home_ownership"] == "mortgage"
    assert c["has_mortgage"][mortgage].mean() > 0.9 > 0.1 > c["has_mortgage"][~mortgage].mean()
    assert (c["credit_history_months"] <= (c["age"] - 18) * 12).all()
    y = full.label.astype(bool)
    assert c["prior_default"][y].mean() > c["prior_default"][~y].mean()
    assert c["debt_to_income"][y].mean() > c["debt_to_income"][~y].mean()


def test_splits_are_disjoint_and_cover_the_data() -> None:
    splits = make_splits(2_000, seed=4)
    ids = [splits.train.row_id, splits.validation.row_id, splits.test.row_id]
    assert [len(i) for i in ids] == [1_400, 300, 300]
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(2_000))
    frame = generate(2_000, seed=4)
    for part in (splits.train, splits.validation, splits.test):
        for name in FEATURE_KINDS:
            assert np.array_equal(part.columns[name], frame.columns[name][part.row_id])
        assert np.array_equal(part.label, frame.label[part.row_id])


def test_canonical_bytes_and_digest_are_deterministic() -> None:
    a = credit_data.canonical_bytes(generate(500, seed=1))
    assert a == credit_data.canonical_bytes(generate(500, seed=1))
    assert a != credit_data.canonical_bytes(generate(500, seed=2))
    digest = credit_data.dataset_digest(make_splits(500, seed=1))
    assert digest == credit_data.dataset_digest(make_splits(500, seed=1))
    other_split = credit_data.split(generate(500, seed=1), seed=9)
    assert credit_data.dataset_digest(other_split) != digest


def test_generator_refuses_too_few_rows() -> None:
    with pytest.raises(ValueError, match="at least"):
        generate(10)
