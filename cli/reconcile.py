"""`paved reconcile`: make the running serving stack match the GitOps repository."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from cli import output as out
from cli.context import CliContext


def build_reconciler(c: CliContext, env: str, target: object) -> object:
    from paved.names import validate_name
    from pipelines.gitops.repo import GitOpsRepo
    from pipelines.gitops.source import GitSource
    from pipelines.reconciler import Reconciler, StateStore

    validate_name(env, "environment")
    repo = GitOpsRepo.open(c.settings.gitops_dir)
    # Production's champion alias follows Git: the reconciler moves it when a change
    # takes effect and puts it back, every pass, when it was moved around the flow.
    return Reconciler(
        source=GitSource(c.settings.gitops_dir),
        registry=c.registry,
        target=target,  # type: ignore[arg-type]
        state=StateStore(c.settings.reconciler_dir),
        settings=c.settings,
        env=env,
        internal_token=target.gateway_spec.internal_token,  # type: ignore[attr-defined]
        before_pass=repo.sync,
    )


def print_report(report: object, fmt: out.Format) -> None:
    from pipelines.reconciler import ReconcileReport

    assert isinstance(report, ReconcileReport)
    if fmt is out.Format.json:
        out.emit_json(report)
        return
    out.console.print(
        f"{report.env}: applied {report.commit[:12]}"
        f" (was {report.previous_commit[:12] if report.previous_commit else '-'})"
    )
    out.table(
        None,
        ["endpoint", "status", "reason"],
        [
            (s.endpoint, s.status, f"{s.reason} (rule: {s.rule})" if s.rule else s.reason)
            for s in report.statuses
        ],
    )
    for ch in report.champions:
        if ch.status != "in_sync":
            out.console.print(
                f"champion of {ch.model} ({ch.endpoint}): {ch.status}"
                + (" [outside the flow]" if ch.outside_flow else "")
                + (f": {ch.reason}" if ch.reason else ""),
                markup=False,
            )


def print_pass(record: object, report: object, fmt: out.Format) -> None:
    """One pass of the control loop: its report, or why it failed and when it retries."""
    from pipelines.reconciler import PassRecord

    assert isinstance(record, PassRecord)
    if report is not None:
        print_report(report, fmt)
        return
    if fmt is out.Format.json:
        out.emit_json(record)
        return
    out.err_console.print(
        f"{record.env}: pass failed ({record.consecutive_failures} in a row, next in "
        f"{record.next_pass_in_s:.0f}s): {record.reason}"
        + (f" (rule: {record.rule})" if record.rule else "")
        + "; serving is unchanged",
        markup=False,
    )


def print_status(c: CliContext, env: str, fmt: out.Format) -> None:
    """What the last pass of ENV's control loop did (exit 1 if it failed)."""
    from paved.names import validate_name
    from pipelines.reconciler import StateStore

    validate_name(env, "environment")
    store = StateStore(c.settings.reconciler_dir)
    record, applied = store.load_pass(env), store.load(env)
    if fmt is out.Format.json:
        out.emit_json(
            {
                "applied_commit": applied.commit,
                "last_pass": None if record is None else record.model_dump(mode="json"),
            }
        )
    else:
        out.console.print(
            f"{env}: applied {applied.commit[:12] if applied.commit else '-'}"
            f" at {applied.applied_at or '-'}"
        )
        if record is None:
            out.console.print("no pass of the control loop recorded")
        elif record.ok:
            refused = f"; refused: {', '.join(record.refused)}" if record.refused else ""
            out.console.print(f"last pass ok at {record.at}{refused}")
        else:
            out.console.print(
                f"last pass FAILED at {record.at} ({record.consecutive_failures} in a row, "
                f"last ok {record.last_ok_at or '-'}): {record.reason}"
                + (f" (rule: {record.rule})" if record.rule else ""),
                markup=False,
            )
    if record is not None and not record.ok:
        raise typer.Exit(1)


def reconcile(
    ctx: typer.Context,
    env: Annotated[str, typer.Option(help="Environment to reconcile.")] = "staging",
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Poll Git and apply changes.")] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the last pass of the control loop.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --watch.")] = 5.0,
    fmt: Annotated[out.Format, typer.Option("--format")] = out.Format.table,
) -> None:
    """Apply the repository's head for ENV to the running `paved serve` (exit 1 if any
    endpoint was refused; it keeps serving what it served before).

    With --watch a failed pass is reported and retried with backoff, never fatal;
    --status shows what the last pass (of this or of `paved serve --env`) did."""
    from serving.deploy import RayServeTarget

    c: CliContext = ctx.obj
    if once + watch + status != 1:
        raise typer.BadParameter("give exactly one of --once, --watch or --status")
    if not interval > 0:
        raise typer.BadParameter("--interval must be above 0")
    if status:
        print_status(c, env, fmt)
        return
    rec = build_reconciler(c, env, RayServeTarget.join(c.settings))
    if once:
        report = rec.once()  # type: ignore[attr-defined]
        print_report(report, fmt)
        raise typer.Exit(1 if report.refused else 0)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rec.run(stop, interval, on_pass=lambda r, rep: print_pass(r, rep, fmt))  # type: ignore[attr-defined]
