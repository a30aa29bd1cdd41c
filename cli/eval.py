"""`paved eval`: evaluate a version offline, record it in MLflow, optionally gate it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import output as out
from cli.context import CliContext

if TYPE_CHECKING:
    from evaluation.gates import GateResult
    from evaluation.record import RecordedEval

GATE_FAILED_EXIT = 3


def eval_(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(metavar="NAME/VERSION", help="The version (or NAME@ALIAS) to evaluate.")
    ],
    against: Annotated[
        str | None,
        typer.Option(help="Gate against this version, e.g. NAME@champion (none yet: bounds only)."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Gate policy file (YAML or JSON); default: the task's policy."),
    ] = None,
    fmt: Annotated[out.Format, typer.Option("--format", "-o", help="table or json")] = (
        out.Format.table
    ),
) -> None:
    """Run the offline suite on a version's verified files and record it in MLflow.

    With --against, gate it against that version's evaluation and list every rule.

    Exit status: 0 evaluated (and the gate, if any, passed); 3 the gate failed;
    2 invalid input; 1 any other error.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # before transformers loads
    from evaluation.gates import load_policy
    from evaluation.offline import evaluate_version, gate_version
    from paved.errors import InvalidInput

    obj: CliContext = ctx.obj
    if policy is not None and against is None:
        raise InvalidInput("--policy needs --against: a policy is a comparison", rule="gate_args")
    gate_policy = load_policy(policy) if policy is not None else None
    if against is None:
        recorded = evaluate_version(obj.registry, ref, actor=obj.actor)
        _show(recorded, None, fmt)
        return
    outcome = gate_version(obj.registry, ref, against, actor=obj.actor, policy=gate_policy)
    _show(outcome.candidate, outcome.gate, fmt)
    if not outcome.gate.passed:
        raise typer.Exit(GATE_FAILED_EXIT)


def _show(recorded: RecordedEval, gate: GateResult | None, fmt: out.Format) -> None:
    from rich.markup import escape

    if fmt is out.Format.json:
        payload: dict[str, Any] = {"evaluation": recorded.model_dump(mode="json")}
        payload["gate"] = gate.model_dump(mode="json") if gate else None
        out.emit_json(payload)
        return
    report = recorded.report
    out.kv(
        f"evaluated {report.ref} with {report.suite} v{report.suite_version}",
        [
            ("run", f"{recorded.run_id} (experiment {recorded.experiment})"),
            ("dataset", report.dataset),
            ("dataset digest", report.dataset_digest),
            ("samples", ", ".join(f"{k} {v}" for k, v in report.samples.items())),
        ],
    )
    out.table("metrics", ["metric", "value"], [(k, _num(v)) for k, v in report.metrics.items()])
    if gate is None:
        return
    out.table(
        f"gate: {gate.candidate} against {gate.champion or 'no champion'}",
        ["rule", "candidate", "baseline", "allowed", "difference", "result"],
        [
            (
                r.rule,
                _num(r.candidate),
                _num(r.baseline),
                _num(r.allowed),
                _num(r.difference),
                r.status,
            )
            for r in gate.rules
        ],
    )
    for line in gate.failures:
        out.console.print(f"[red]failed[/red] {escape(line)}", highlight=False)
    verdict = "[green]gate passed[/green]" if gate.passed else "[red]gate failed[/red]"
    out.console.print(verdict)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
