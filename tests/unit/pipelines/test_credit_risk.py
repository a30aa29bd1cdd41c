"""credit-risk: training, metrics, strict inputs, and the no-pickle format.

The generated dataset and the model code's imports: tests/unit/bundled/test_credit_risk_data.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bundled.credit_risk import data as credit_data
from bundled.credit_risk.data import FEATURE_KINDS, FEATURES, make_splits
from bundled.credit_risk.model import CONFIG_FILE, WEIGHTS_FILE, CreditRiskModel, load
from evaluation.metrics import roc_auc
from paved.errors import InvalidInput
from pipelines.trainers.base import TrainResult
from pipelines.trainers.credit_risk import train

pytestmark = pytest.mark.unit

# Small enough to train in well under a second, large enough for a stable test AUC.
ROWS = 8_000
EPOCHS = 12
TINY = {"rows": 1_000, "epochs": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(tmp_path_factory.mktemp("credit") / "model", seed=0, rows=ROWS, epochs=EPOCHS)


@pytest.fixture(scope="module")
def model(trained: TrainResult) -> CreditRiskModel:
    return load(trained.model_dir)


@pytest.fixture(scope="module")
def test_rows() -> list[dict[str, object]]:
    return make_splits(ROWS, seed=0).test.to_rows()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_weights_and_different_seed_does_not(
    tmp_path: Path,
) -> None:
    a = train(tmp_path / "a", seed=7, **TINY)
    b = train(tmp_path / "b", seed=7, **TINY)
    c = train(tmp_path / "c", seed=8, **TINY)
    assert _sha256(a.model_dir / WEIGHTS_FILE) == _sha256(b.model_dir / WEIGHTS_FILE)
    assert _sha256(a.model_dir / CONFIG_FILE) == _sha256(b.model_dir / CONFIG_FILE)
    assert a.metrics == b.metrics
    assert a.dataset_digest == b.dataset_digest
    assert _sha256(a.model_dir / WEIGHTS_FILE) != _sha256(c.model_dir / WEIGHTS_FILE)
    assert a.dataset_digest != c.dataset_digest


def test_training_leaves_global_torch_state_alone(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    train(tmp_path / "m", seed=3, **TINY)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before


# --- training outcome --------------------------------------------------------------------


def test_trained_model_beats_chance_and_is_calibrated(trained: TrainResult) -> None:
    m = trained.metrics
    assert m["auc"] > 0.72
    # Accuracy at 0.5 is a weak signal with ~20% positives; it must at least match the
    # always-"no default" baseline.
    assert m["accuracy"] >= 1 - m["base_rate"] - 0.005
    # Against a model that knows only the base rate: its log loss is the label entropy,
    # its Brier score base * (1 - base).
    base = m["base_rate"]
    assert m["log_loss"] < -(base * math.log(base) + (1 - base) * math.log(1 - base)) - 0.05
    assert m["brier"] < base * (1 - base) - 0.015
    assert m["ece"] < 0.06


def test_train_result_records_lineage(trained: TrainResult) -> None:
    assert trained.kind == "credit-risk"
    assert trained.task == "tabular-classification"
    assert trained.framework == "torch"
    assert trained.dataset_digest.startswith("sha256:")
    assert len(trained.dataset_digest) == len("sha256:") + 64
    assert trained.params["seed"] == 0
    assert trained.params["rows"] == ROWS
    assert trained.params["train_rows"] == 5_600
    assert 1 <= int(trained.params["best_epoch"]) <= EPOCHS
    assert f"{ROWS} rows" in trained.dataset_description


def test_reference_profile_covers_every_raw_feature(trained: TrainResult) -> None:
    profile = trained.reference_profile
    assert profile.rows == 5_600
    assert list(profile.features) == list(FEATURE_KINDS)
    for name, kind in FEATURE_KINDS.items():
        feature = profile.features[name]
        assert feature.kind == ("numeric" if kind == "numeric" else "categorical")
    age = profile.features["age"]
    assert age.kind == "numeric"
    assert sum(age.counts) == 5_600
    assert 21 <= age.min < age.mean < age.max <= 75
    region = profile.features["region"]
    assert region.kind == "categorical"
    assert set(region.frequencies) == set(credit_data.REGION)
    prior_default = profile.features["prior_default"]
    assert prior_default.kind == "categorical"
    assert set(prior_default.frequencies) == {"False", "True"}


# --- the saved model ---------------------------------------------------------------------


def test_saved_dir_holds_only_safetensors_and_json(trained: TrainResult) -> None:
    files = sorted(p.name for p in trained.model_dir.iterdir())
    assert files == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((trained.model_dir / CONFIG_FILE).read_text())
    assert config["pavedpath_model"] == "credit-risk"
    assert config["format_version"] == 1
    assert not (trained.model_dir / WEIGHTS_FILE).read_bytes().startswith(b"\x80")


def test_load_never_unpickles(trained: TrainResult, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    loaded = load(trained.model_dir)
    assert len(loaded.predict_proba(make_splits(ROWS, seed=0).test.to_rows()[:5])) == 5


def test_load_round_trip_reproduces_training_metrics(
    trained: TrainResult, model: CreditRiskModel, tmp_path: Path
) -> None:
    test = make_splits(ROWS, seed=0).test
    probs = np.asarray(model.predict_columns(test.columns), dtype=np.float64)
    # The metrics were computed in memory before saving; the loaded weights agree exactly.
    assert roc_auc(test.label, probs) == trained.metrics["auc"]
    model.save(tmp_path / "again")
    assert _sha256(tmp_path / "again" / WEIGHTS_FILE) == _sha256(trained.model_dir / WEIGHTS_FILE)
    assert load(tmp_path / "again").predict_columns(test.columns) == probs.tolist()


def test_rows_and_columns_and_lists_score_the_same(
    model: CreditRiskModel, test_rows: list[dict[str, object]]
) -> None:
    rows = test_rows[:50]
    by_rows = model.predict_proba(rows)
    as_lists = {name: [r[name] for r in rows] for name in FEATURE_KINDS}
    assert model.predict_columns(as_lists) == by_rows
    assert all(0.0 < p < 1.0 for p in by_rows)
    assert model.predict_proba([]) == []


def test_input_schema_is_one_v2_tensor_per_feature(model: CreditRiskModel) -> None:
    schema = {t.name: (t.datatype, t.shape) for t in model.input_schema()}
    expected = {"numeric": "FP32", "categorical": "BYTES", "binary": "BOOL"}
    assert schema == {f.name: (expected[f.kind], [-1]) for f in FEATURES}
    assert [t.datatype for t in model.output_schema()] == ["FP32"]


def test_unseen_category_scores_through_the_unknown_slot(
    model: CreditRiskModel, test_rows: list[dict[str, object]]
) -> None:
    row = dict(test_rows[0], loan_purpose="wedding")
    as_bytes = dict(test_rows[0], loan_purpose=b"wedding")
    [p] = model.predict_proba([row])
    assert 0.0 < p < 1.0
    assert model.predict_proba([as_bytes]) == [p]


def test_declared_v2_datatypes_are_checked(
    model: CreditRiskModel, test_rows: list[dict[str, object]]
) -> None:
    columns = {name: [test_rows[0][name]] for name in FEATURE_KINDS}
    good = {t.name: t.datatype for t in model.input_schema()}
    assert len(model.predict_columns(columns, good)) == 1
    with pytest.raises(InvalidInput) as info:
        model.predict_columns(columns, {**good, "region": "FP32"})
    assert info.value.rule == "datatype_mismatch"
    assert info.value.details["feature"] == "region"


# --- strict input validation -------------------------------------------------------------

RowEdit = Callable[[dict[str, Any]], Any]


def _without(name: str) -> RowEdit:
    return lambda row: {k: v for k, v in row.items() if k != name}


def _with(name: str, value: object) -> RowEdit:
    return lambda row: [{**row, name: value}]


BAD_ROWS: list[tuple[str, RowEdit, str, str | None]] = [
    ("missing", lambda r: [_without("age")(r)], "feature_missing", "age"),
    ("unknown", lambda r: [{**r, "zip_code": "10001"}], "feature_unknown", "zip_code"),
    ("numeric as string", _with("age", "41"), "feature_type", "age"),
    ("numeric as bool", _with("annual_income", True), "feature_type", "annual_income"),
    ("numeric as null", _with("loan_amount", None), "feature_type", "loan_amount"),
    ("numeric as list", _with("loan_amount", [1.0]), "feature_type", "loan_amount"),
    ("NaN", _with("debt_to_income", float("nan")), "feature_not_finite", "debt_to_income"),
    ("+inf", _with("credit_utilization", math.inf), "feature_not_finite", "credit_utilization"),
    ("-inf", _with("age", -math.inf), "feature_not_finite", "age"),
    ("int beyond float", _with("annual_income", 10**400), "feature_not_finite", "annual_income"),
    ("categorical as int", _with("region", 3), "feature_type", "region"),
    ("categorical as null", _with("region", None), "feature_type", "region"),
    ("categorical bad utf-8", _with("region", b"\xff\xfe"), "feature_type", "region"),
    ("binary as int", _with("prior_default", 1), "feature_type", "prior_default"),
    ("binary as string", _with("has_mortgage", "true"), "feature_type", "has_mortgage"),
    ("row not an object", lambda r: [list(r.values())], "row_type", None),
    ("rows not a list", lambda r: r, "batch_type", None),
]


@pytest.mark.parametrize(
    ("edit", "rule", "feature"),
    [pytest.param(e, rule, f, id=case) for case, e, rule, f in BAD_ROWS],
)
def test_bad_rows_are_refused_naming_rule_and_feature(
    model: CreditRiskModel,
    test_rows: list[dict[str, object]],
    edit: RowEdit,
    rule: str,
    feature: str | None,
) -> None:
    with pytest.raises(InvalidInput) as info:
        model.predict_proba(edit(copy.deepcopy(test_rows[0])))
    assert info.value.rule == rule
    assert info.value.status == 400
    assert info.value.details.get("feature") == feature
    if feature is not None:
        assert feature in info.value.message


def _columns(rows: list[dict[str, object]]) -> dict[str, Any]:
    return {name: [r[name] for r in rows] for name in FEATURE_KINDS}


BAD_COLUMNS: list[tuple[str, RowEdit, str, str]] = [
    ("lengths differ", lambda c: {**c, "region": c["region"][:-1]}, "column_length", "region"),
    ("column is a string", lambda c: {**c, "region": "north"}, "column_type", "region"),
    ("column is a scalar", lambda c: {**c, "age": 41.0}, "column_type", "age"),
    ("2-D array", lambda c: {**c, "age": np.ones((3, 1))}, "column_type", "age"),
    ("string array for FP32", lambda c: {**c, "age": np.array(["1"] * 3)}, "feature_type", "age"),
    ("bool array for FP32", lambda c: {**c, "age": np.ones(3, bool)}, "feature_type", "age"),
    (
        "NaN in array",
        lambda c: {**c, "age": np.array([1.0, np.nan, 2])},
        "feature_not_finite",
        "age",
    ),
    (
        "float array for BOOL",
        lambda c: {**c, "prior_default": np.ones(3)},
        "feature_type",
        "prior_default",
    ),
    ("missing column", lambda c: _without("region")(c), "feature_missing", "region"),
]


@pytest.mark.parametrize(
    ("edit", "rule", "feature"),
    [pytest.param(e, rule, f, id=case) for case, e, rule, f in BAD_COLUMNS],
)
def test_bad_columns_are_refused_naming_rule_and_feature(
    model: CreditRiskModel,
    test_rows: list[dict[str, object]],
    edit: RowEdit,
    rule: str,
    feature: str,
) -> None:
    with pytest.raises(InvalidInput) as info:
        model.predict_columns(edit(_columns(test_rows[:3])))
    assert info.value.rule == rule
    assert info.value.details["feature"] == feature


def test_refusal_names_the_offending_row(
    model: CreditRiskModel, test_rows: list[dict[str, object]]
) -> None:
    rows = [dict(r) for r in test_rows[:4]]
    rows[2]["age"] = float("nan")
    with pytest.raises(InvalidInput) as info:
        model.predict_proba(rows)
    assert info.value.details == {"feature": "age", "row": 2}


# --- loading refuses what is not a credit-risk model -------------------------------------


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _edit_config(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    change(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        pytest.param(lambda c: c.update(trust_remote_code=True), "model_config", id="extra key"),
        pytest.param(lambda c: c.update(format_version=2), "model_config", id="future version"),
        pytest.param(lambda c: c.update(pavedpath_model="tiny-gpt"), "model_config", id="kind"),
        pytest.param(lambda c: c["features"][0].update(std=0), "model_config", id="zero std"),
        pytest.param(
            lambda c: c["features"][0].update(kind="categorical"), "model_config", id="bad spec"
        ),
        pytest.param(
            lambda c: c["architecture"].update(hidden_sizes=[16, 8]), "model_weights", id="shape"
        ),
    ],
)
def test_load_refuses_a_config_that_does_not_match(
    trained: TrainResult, tmp_path: Path, change: Callable[[dict[str, Any]], None], rule: str
) -> None:
    directory = _copy_model(trained.model_dir, tmp_path / "m")
    _edit_config(directory, change)
    with pytest.raises(InvalidInput) as info:
        load(directory)
    assert info.value.rule == rule


def test_load_refuses_bad_weights(trained: TrainResult, tmp_path: Path) -> None:
    directory = _copy_model(trained.model_dir, tmp_path / "m")
    tensors = load_file(str(directory / WEIGHTS_FILE))
    extra = dict(tensors, stowaway=torch.zeros(1))
    save_file(extra, str(directory / WEIGHTS_FILE))
    with pytest.raises(InvalidInput, match="does not match") as info:
        load(directory)
    assert info.value.rule == "model_weights"

    save_file({k: v.double() for k, v in tensors.items()}, str(directory / WEIGHTS_FILE))
    with pytest.raises(InvalidInput, match="float32"):
        load(directory)

    (directory / WEIGHTS_FILE).write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(InvalidInput) as info:
        load(directory)
    assert info.value.rule == "model_weights"

    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(InvalidInput) as info:
        load(directory)
    assert info.value.rule == "model_files"


def test_save_refuses_a_directory_with_other_files(model: CreditRiskModel, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput) as info:
        model.save(tmp_path)
    assert info.value.rule == "model_dir_not_empty"
    assert not (tmp_path / WEIGHTS_FILE).exists()
