"""Offline evaluation end to end: run a suite, record it, and gate it against a champion.

This is what ``paved eval`` and the promotion flow call. A champion's recorded
evaluation is reused when it came from the same suite with the same settings (same
numbers, no need to score it again); otherwise the champion is evaluated now and
recorded too, so both sides of a gate always come from the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from evaluation.gates import GatePolicy, GateResult, check_digest, default_policy, evaluate_gate
from evaluation.record import RecordedEval, latest_eval, record_eval
from evaluation.report import EvalReport
from evaluation.suites import run_suite
from paved.errors import InvalidInput, NotFound
from paved.names import ModelRef
from paved.schemas import Actor

if TYPE_CHECKING:
    from registry.service import Registry


class GateOutcome(BaseModel):
    """A candidate's recorded evaluation, the champion's report and the gate's verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: RecordedEval
    champion: EvalReport | None
    gate: GateResult


def evaluate_version(registry: Registry, ref: ModelRef | str, *, actor: Actor) -> RecordedEval:
    """Run the suite for the version's task on its verified files, and record the result."""
    return record_eval(registry, run_suite(registry, ref), actor=actor)


def champion_report(
    registry: Registry, ref: ModelRef | str, *, like: EvalReport, actor: Actor
) -> EvalReport | None:
    """The report to compare ``like`` with: the version ``ref`` names, evaluated alike.

    None when ``ref`` is an alias the (existing) model does not have yet: a first
    promotion has no champion. A missing model is still an error, so a mistyped
    name cannot pass a gate by having nothing to compare with.
    """
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    try:
        info = registry.get(ref)
    except NotFound:
        if ref.alias is None:
            raise
        registry.list_versions(ref.name)  # NotFound if the model itself does not exist
        return None
    if info.lineage.task != like.task:
        raise InvalidInput(
            f"{info.ref} is a {info.lineage.task} model and {like.ref} a {like.task} model; "
            "a gate compares versions of the same task",
            rule="gate_task_mismatch",
        )
    recorded = latest_eval(registry, info.name, info.version)
    if recorded is not None and _same_suite(recorded, like):
        return recorded
    return evaluate_version(registry, info.ref, actor=actor).report


def gate_version(
    registry: Registry,
    candidate: ModelRef | str,
    against: ModelRef | str,
    *,
    actor: Actor,
    policy: GatePolicy | None = None,
) -> GateOutcome:
    """Evaluate and record ``candidate``, then judge it against ``against``'s report.

    The policy defaults to :func:`~evaluation.gates.default_policy` for the task; the
    candidate's digest is checked again right before the verdict.
    """
    recorded = evaluate_version(registry, candidate, actor=actor)
    report = recorded.report
    champion = champion_report(registry, against, like=report, actor=actor)
    gate = evaluate_gate(
        report,
        champion,
        policy or default_policy(report.task),
        digest=check_digest(registry, report.ref),
    )
    return GateOutcome(candidate=recorded, champion=champion, gate=gate)


def _same_suite(a: EvalReport, b: EvalReport) -> bool:
    return (a.suite, a.suite_version, a.params) == (b.suite, b.suite_version, b.params)
