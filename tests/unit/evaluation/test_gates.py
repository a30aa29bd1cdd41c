"""Gates: rule tables at and over the margin, no champion, comparability, the policy schema."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluation.gates import (
    GatePolicy,
    GateResult,
    GateRule,
    RuleResult,
    default_policy,
    evaluate_gate,
    load_policy,
    policy_json_schema,
)
from evaluation.report import EvalReport
from paved.errors import InvalidInput

pytestmark = pytest.mark.unit

VERIFIED = RuleResult(rule="digest verified", check="digest", status="pass", message="ok")
CLASSIFIER = default_policy("tabular-classification")
LLM = default_policy("text-generation")


def report(
    metrics: dict[str, float],
    *,
    version: int = 2,
    suite: str = "credit-risk-offline",
    suite_version: int = 1,
    dataset_digest: str = "sha256:" + "a" * 64,
) -> EvalReport:
    return EvalReport(
        suite=suite,
        suite_version=suite_version,
        model="credit-risk",
        version=version,
        model_digest="sha256:" + "0" * 64,
        task="tabular-classification",
        metrics=metrics,
        samples={"rows": 4096},
        dataset="unit-test data",
        dataset_digest=dataset_digest,
    )


CHAMPION = report({"auc": 0.781, "ece": 0.030}, version=1)


def by_rule(result: GateResult) -> dict[str, RuleResult]:
    return {r.rule: r for r in result.rules}


@pytest.mark.parametrize(
    ("auc", "ece", "passed", "failed_rules"),
    [
        (0.781, 0.030, True, []),  # identical
        (0.800, 0.010, True, []),  # better on both
        (0.771, 0.030, True, []),  # auc exactly at the margin (0.781 - 0.771 is not 0.01 in floats)
        (0.7709, 0.030, False, ["auc vs champion"]),  # just over it
        (0.747, 0.030, False, ["auc vs champion"]),
        (0.781, 0.050, True, []),  # ece risen exactly by the margin
        (0.781, 0.0501, False, ["ece vs champion"]),
        (0.700, 0.100, False, ["auc vs champion", "ece vs champion"]),
    ],
)
def test_classifier_default_policy_table(
    auc: float, ece: float, passed: bool, failed_rules: list[str]
) -> None:
    result = evaluate_gate(report({"auc": auc, "ece": ece}), CHAMPION, CLASSIFIER, digest=VERIFIED)
    assert result.passed is passed
    assert [r.rule for r in result.rules if r.status == "fail"] == failed_rules
    assert len(result.failures) == len(failed_rules)
    assert [r.rule for r in result.rules] == [
        "digest verified",
        "same suite",
        "same dataset",
        "auc vs champion",
        "ece vs champion",
    ]
    auc_row = by_rule(result)["auc vs champion"]
    assert (auc_row.candidate, auc_row.baseline, auc_row.allowed) == (auc, 0.781, 0.01)
    assert auc_row.difference == pytest.approx(0.781 - auc)


def test_failure_says_which_rule_failed_and_by_how_much() -> None:
    result = evaluate_gate(
        report({"auc": 0.747, "ece": 0.03}), CHAMPION, CLASSIFIER, digest=VERIFIED
    )
    assert result.failures == ["auc fell 0.034 below the champion's 0.781; the policy allows 0.01"]
    assert result.summary().startswith("gate failed for credit-risk/2: auc fell 0.034")
    ece = by_rule(evaluate_gate(report({"auc": 0.78, "ece": 0.06}), CHAMPION, CLASSIFIER))
    assert ece["ece vs champion"].message == (
        "ece rose 0.03 above the champion's 0.03; the policy allows 0.02"
    )


@pytest.mark.parametrize(
    ("ppl", "passed"),
    [(4.0, True), (3.5, True), (4.2, True), (4.2001, False), (5.0, False), (math.inf, False)],
)
def test_ratio_rule_for_perplexity(ppl: float, passed: bool) -> None:
    champ = report({"perplexity": 4.0, "exact_match": 0.5}, version=1, suite="tiny-gpt-offline")
    cand = report({"perplexity": ppl, "exact_match": 0.5}, suite="tiny-gpt-offline")
    row = by_rule(evaluate_gate(cand, champ, LLM, digest=VERIFIED))["perplexity vs champion"]
    assert row.passed is passed
    assert row.allowed == pytest.approx(0.2)  # 5% of the champion's 4.0, in perplexity units
    if ppl == 5.0:
        assert row.message == (
            "perplexity rose 25.0% above the champion's 4 (to 5); the policy allows 5.0%"
        )


def test_exact_match_may_drop_by_two_points() -> None:
    champ = report({"perplexity": 4.0, "exact_match": 0.50}, version=1, suite="tiny-gpt-offline")
    ok = report({"perplexity": 4.0, "exact_match": 0.48}, suite="tiny-gpt-offline")
    bad = report({"perplexity": 4.0, "exact_match": 0.47}, suite="tiny-gpt-offline")
    assert evaluate_gate(ok, champ, LLM, digest=VERIFIED).passed
    result = evaluate_gate(bad, champ, LLM, digest=VERIFIED)
    assert result.failures == [
        "exact_match fell 0.03 below the champion's 0.5; the policy allows 0.02"
    ]


def test_llm_reports_on_different_held_out_splits_are_comparable_by_default() -> None:
    # tiny-gpt's held-out prompts follow each version's training seed.
    champ = report({"perplexity": 4.0, "exact_match": 0.5}, version=1, suite="tiny-gpt-offline")
    cand = report(
        {"perplexity": 4.0, "exact_match": 0.5},
        suite="tiny-gpt-offline",
        dataset_digest="sha256:" + "b" * 64,
    )
    result = evaluate_gate(cand, champ, LLM, digest=VERIFIED)
    assert result.passed
    assert "same dataset" not in by_rule(result)


def test_no_champion_applies_only_absolute_bounds() -> None:
    policy = GatePolicy(
        rules=[
            GateRule(metric="auc", higher_is_better=True, max_regression=0.01, min=0.7),
            GateRule(metric="ece", higher_is_better=False, max=0.05),
        ]
    )
    good = evaluate_gate(report({"auc": 0.75, "ece": 0.05}), None, policy, digest=VERIFIED)
    assert good.passed
    assert good.champion is None
    rows = by_rule(good)
    assert rows["auc vs champion"].status == "skipped"
    assert rows["auc >= 0.7"].status == "pass"
    assert rows["ece <= 0.05"].status == "pass"  # at the bound
    assert "same suite" not in rows
    bad = evaluate_gate(report({"auc": 0.65, "ece": 0.06}), None, policy, digest=VERIFIED)
    assert bad.failures == [
        "auc is 0.65, below the minimum 0.7 by 0.05",
        "ece is 0.06, above the maximum 0.05 by 0.01",
    ]
    # The default policies have only comparisons: a first promotion passes them.
    assert evaluate_gate(report({"auc": 0.5, "ece": 0.4}), None, CLASSIFIER, digest=VERIFIED).passed


def test_digest_must_be_verified_unless_the_policy_says_otherwise() -> None:
    cand = report({"auc": 0.79, "ece": 0.03})
    unverified = evaluate_gate(cand, CHAMPION, CLASSIFIER)
    assert not unverified.passed
    assert unverified.failures == [
        "credit-risk/2's files were not verified against their registered digests for this gate"
    ]
    mismatch = RuleResult(
        rule="digest verified", check="digest", status="fail", message="model.safetensors differs"
    )
    assert evaluate_gate(cand, CHAMPION, CLASSIFIER, digest=mismatch).failures == [
        "model.safetensors differs"
    ]
    lax = CLASSIFIER.model_copy(update={"require_digest_verified": False})
    result = evaluate_gate(cand, CHAMPION, lax)
    assert result.passed
    assert "digest verified" not in by_rule(result)


def test_reports_from_different_suites_or_data_are_not_compared() -> None:
    cand = report({"auc": 0.79, "ece": 0.03}, suite_version=2)
    result = evaluate_gate(cand, CHAMPION, CLASSIFIER, digest=VERIFIED)
    assert not result.passed
    assert by_rule(result)["same suite"].message == (
        "the candidate was evaluated with credit-risk-offline v2 and the champion "
        "credit-risk/1 with credit-risk-offline v1; evaluate both with the same suite"
    )
    other_data = report({"auc": 0.79, "ece": 0.03}, dataset_digest="sha256:" + "c" * 64)
    result = evaluate_gate(other_data, CHAMPION, CLASSIFIER, digest=VERIFIED)
    assert [r.rule for r in result.rules if r.status == "fail"] == ["same dataset"]


def test_missing_or_nan_metrics_fail_closed() -> None:
    missing = evaluate_gate(report({"auc": 0.79}), CHAMPION, CLASSIFIER, digest=VERIFIED)
    assert missing.failures == ["the candidate's report has no metric 'ece'"]
    nan = evaluate_gate(
        report({"auc": math.nan, "ece": 0.03}), CHAMPION, CLASSIFIER, digest=VERIFIED
    )
    assert nan.failures == ["the candidate's report has NaN for 'auc'"]
    old_champ = report({"auc": 0.78}, version=1)
    result = evaluate_gate(report({"auc": 0.78, "ece": 0.03}), old_champ, CLASSIFIER)
    assert "cannot compare ece: the champion credit-risk/1's report has no value" in (
        result.failures
    )


@pytest.mark.parametrize(
    "rule",
    [
        {"metric": "auc", "higher_is_better": True},  # nothing to check
        {
            "metric": "auc",
            "higher_is_better": True,
            "max_regression": 0.1,
            "max_regression_ratio": 0.1,
        },
        {"metric": "auc", "higher_is_better": True, "max_regression": -0.1},
        {"metric": "auc", "higher_is_better": True, "min": 0.9, "max": 0.8},
        {"metric": "AUC; drop", "higher_is_better": True, "min": 0.5},
        {"metric": "auc", "higher_is_better": True, "min": 0.5, "typo": 1},
    ],
)
def test_policy_refuses_bad_rules(rule: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GatePolicy.model_validate({"rules": [rule]})


def test_policy_refuses_unknown_keys_and_unknown_tasks() -> None:
    with pytest.raises(ValidationError):
        GatePolicy.model_validate({"rules": [], "require_digest": True})
    with pytest.raises(InvalidInput) as exc:
        default_policy("image-segmentation")
    assert exc.value.rule == "gate_task"


def test_json_schema_export_validates_the_default_policies() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_json_schema()
    json.dumps(schema)  # serialisable as it is
    assert schema["additionalProperties"] is False
    rule = schema["$defs"]["GateRule"]
    assert rule["additionalProperties"] is False
    assert all("description" in p for p in rule["properties"].values())
    for policy in (CLASSIFIER, LLM):
        jsonschema.validate(policy.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rules": [], "extra": 1}, schema)


def test_load_policy_reads_yaml_and_refuses_invalid_files(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "rules:\n"
        "  - {metric: auc, higher_is_better: true, max_regression: 0.005, min: 0.7}\n"
        "require_same_dataset: true\n"
    )
    policy = load_policy(path)
    assert policy.rules[0].max_regression == 0.005
    assert policy.require_digest_verified is True
    path.write_text("rules: [{metric: auc}]\n")
    with pytest.raises(InvalidInput) as exc:
        load_policy(path)
    assert exc.value.rule == "gate_policy"
    with pytest.raises(InvalidInput):
        load_policy(tmp_path / "missing.yaml")
