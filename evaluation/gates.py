"""Promotion gates: judge a candidate's report against the champion's under a policy.

The policy (:mod:`evaluation.policy`, re-exported here) is data: rules per metric,
whether the candidate's files must have been verified against their registered
digests, and whether both reports must come from the same evaluation data.

:func:`evaluate_gate` is pure: two reports and a policy in, a :class:`GateResult`
out, listing every check with both values, the margin allowed and the difference
seen, so a refused promotion says which rule failed and by how much. With no
champion (a first promotion) only the absolute bounds apply.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluation.policy import GatePolicy, GateRule, default_policy, load_policy, policy_json_schema
from evaluation.report import EvalReport
from paved.errors import DigestMismatch, UnsafeModel
from paved.names import ModelRef

if TYPE_CHECKING:
    from registry.service import Registry

__all__ = [
    "GatePolicy",
    "GateResult",
    "GateRule",
    "RuleResult",
    "check_digest",
    "default_policy",
    "evaluate_gate",
    "load_policy",
    "policy_json_schema",
]

Check = Literal["regression", "min", "max", "metric", "comparable", "digest"]
Status = Literal["pass", "fail", "skipped"]
_REL_TOL, _ABS_TOL = 1e-9, 1e-12  # "at the margin" passes despite float rounding


class RuleResult(BaseModel):
    """One check of a gate: the values compared, the margin, the outcome, one line why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(description="Which rule, e.g. 'auc vs champion'.")
    check: Check
    metric: str | None = None
    candidate: float | None = Field(default=None, description="The candidate's value.")
    baseline: float | None = Field(
        default=None, description="The champion's value, or the bound for min/max."
    )
    allowed: float | None = Field(
        default=None, description="How much worse than the baseline is allowed (metric units)."
    )
    difference: float | None = Field(
        default=None, description="How much worse than the baseline it is; negative is better."
    )
    status: Status
    message: str

    @property
    def passed(self) -> bool:
        return self.status != "fail"


class GateResult(BaseModel):
    """Every check of a gate, and whether the candidate may be promoted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: str = Field(description="NAME/VERSION of the candidate.")
    champion: str | None = Field(description="NAME/VERSION of the champion, if any.")
    passed: bool
    rules: list[RuleResult] = Field(description="Every check, in the order made.")
    policy: GatePolicy = Field(description="The policy the checks came from.")

    @property
    def failures(self) -> list[str]:
        """One line per failed check, saying which rule failed and by how much."""
        return [r.message for r in self.rules if r.status == "fail"]

    def summary(self) -> str:
        if self.passed:
            return f"gate passed: {self.candidate} against {self.champion or 'no champion'}"
        return f"gate failed for {self.candidate}: " + "; ".join(self.failures)


def evaluate_gate(
    candidate: EvalReport,
    champion: EvalReport | None,
    policy: GatePolicy,
    *,
    digest: RuleResult | None = None,
) -> GateResult:
    """Judge ``candidate`` against ``champion`` under ``policy``; pure, no I/O.

    ``digest`` is the result of :func:`check_digest` for the candidate; when the
    policy requires a verified digest and none is given, that check fails rather
    than assume the files are intact.
    """
    rows: list[RuleResult] = []
    if policy.require_digest_verified or digest is not None:
        rows.append(digest or _unverified(candidate))
    if champion is not None:
        rows.extend(_comparability(candidate, champion, policy))
    for rule in policy.rules:
        rows.extend(_check_rule(rule, candidate, champion))
    return GateResult(
        candidate=candidate.ref,
        champion=champion.ref if champion else None,
        passed=all(r.passed for r in rows),
        rules=rows,
        policy=policy,
    )


def check_digest(registry: Registry, ref: ModelRef | str) -> RuleResult:
    """Fetch the version (which verifies every file's sha256) and report the outcome."""
    info = registry.get(ref)
    try:
        registry.fetch(info.ref)
    except (DigestMismatch, UnsafeModel) as exc:
        return RuleResult(
            rule="digest verified",
            check="digest",
            status="fail",
            message=f"{info.ref}'s files do not match what was registered: {exc.message}",
        )
    return RuleResult(
        rule="digest verified",
        check="digest",
        status="pass",
        message=f"every file of {info.ref} matches its registered sha256 ({info.digest[:19]}…)",
    )


# ----------------------------------------------------------------------------- checks


def _unverified(candidate: EvalReport) -> RuleResult:
    return RuleResult(
        rule="digest verified",
        check="digest",
        status="fail",
        message=f"{candidate.ref}'s files were not verified against their registered "
        "digests for this gate",
    )


def _comparability(
    candidate: EvalReport, champion: EvalReport, policy: GatePolicy
) -> list[RuleResult]:
    cand_suite = f"{candidate.suite} v{candidate.suite_version}"
    champ_suite = f"{champion.suite} v{champion.suite_version}"
    same_suite = cand_suite == champ_suite
    rows = [
        RuleResult(
            rule="same suite",
            check="comparable",
            status="pass" if same_suite else "fail",
            message=f"both evaluated with {cand_suite}"
            if same_suite
            else f"the candidate was evaluated with {cand_suite} and the champion "
            f"{champion.ref} with {champ_suite}; evaluate both with the same suite",
        )
    ]
    if policy.require_same_dataset:
        same = candidate.dataset_digest == champion.dataset_digest
        rows.append(
            RuleResult(
                rule="same dataset",
                check="comparable",
                status="pass" if same else "fail",
                message=f"both scored on {candidate.dataset_digest[:19]}…"
                if same
                else f"the candidate was scored on {candidate.dataset_digest[:19]}… and the "
                f"champion on {champion.dataset_digest[:19]}…; the policy requires the same data",
            )
        )
    return rows


def _check_rule(rule: GateRule, cand: EvalReport, champ: EvalReport | None) -> list[RuleResult]:
    value = cand.metrics.get(rule.metric)
    if value is None or math.isnan(value):
        what = "has no metric" if value is None else "has NaN for"
        return [
            RuleResult(
                rule=rule.metric,
                check="metric",
                metric=rule.metric,
                status="fail",
                message=f"the candidate's report {what} {rule.metric!r}",
            )
        ]
    rows: list[RuleResult] = []
    if rule.max_regression is not None or rule.max_regression_ratio is not None:
        rows.append(_regression(rule, value, champ))
    if rule.min is not None:
        rows.append(_bound(rule, value, rule.min, "min"))
    if rule.max is not None:
        rows.append(_bound(rule, value, rule.max, "max"))
    return rows


def _regression(rule: GateRule, value: float, champ: EvalReport | None) -> RuleResult:
    name = rule.metric
    ratio = rule.max_regression_ratio
    label = f"{name} vs champion"
    if champ is None:
        return RuleResult(
            rule=label,
            check="regression",
            metric=name,
            candidate=value,
            status="skipped",
            message=f"no champion: {name} is not compared",
        )
    base = champ.metrics.get(name)
    if base is None or math.isnan(base):
        return RuleResult(
            rule=label,
            check="regression",
            metric=name,
            candidate=value,
            status="fail",
            message=f"cannot compare {name}: the champion {champ.ref}'s report has no value",
        )
    allowed = ratio * abs(base) if ratio is not None else float(rule.max_regression or 0.0)
    worse = (base - value) if rule.higher_is_better else (value - base)
    ok = _within(worse, allowed)
    return RuleResult(
        rule=label,
        check="regression",
        metric=name,
        candidate=value,
        baseline=base,
        allowed=allowed,
        difference=worse,
        status="pass" if ok else "fail",
        message=_regression_message(name, value, base, allowed, ratio),
    )


def _regression_message(
    name: str, value: float, base: float, allowed: float, ratio: float | None
) -> str:
    if value == base:
        return f"{name} equals the champion's {_num(base)}"
    verb, side = ("rose", "above") if value > base else ("fell", "below")
    if ratio is not None and base != 0:
        moved = f"{abs(value - base) / abs(base) * 100:.1f}%"
        return (
            f"{name} {verb} {moved} {side} the champion's {_num(base)} (to {_num(value)}); "
            f"the policy allows {ratio * 100:.1f}%"
        )
    return (
        f"{name} {verb} {_num(abs(value - base))} {side} the champion's {_num(base)}; "
        f"the policy allows {_num(allowed)}"
    )


def _bound(rule: GateRule, value: float, bound: float, kind: Literal["min", "max"]) -> RuleResult:
    past = (bound - value) if kind == "min" else (value - bound)
    ok = _within(past, 0.0)
    if ok:
        side = "at or above" if kind == "min" else "at or below"
        message = f"{rule.metric} is {_num(value)}, {side} the {kind}imum {_num(bound)}"
    else:
        side = "below" if kind == "min" else "above"
        message = (
            f"{rule.metric} is {_num(value)}, {side} the {kind}imum {_num(bound)} by {_num(past)}"
        )
    return RuleResult(
        rule=f"{rule.metric} {'>=' if kind == 'min' else '<='} {_num(bound)}",
        check=kind,
        metric=rule.metric,
        candidate=value,
        baseline=bound,
        allowed=0.0,
        difference=past,
        status="pass" if ok else "fail",
        message=message,
    )


def _within(worse: float, allowed: float) -> bool:
    """``worse <= allowed``, counting a difference at the margin up to rounding as within."""
    if math.isnan(worse):
        return False
    return worse <= allowed or math.isclose(worse, allowed, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def _num(x: float) -> str:
    """Four significant digits: enough to tell a difference from the margin it broke."""
    if math.isinf(x) or x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.1f}"
