"""`paved reconcile`: make the running serving stack match the GitOps repository."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from paved.cli import output as out
from paved.cli.context import CliContext


def build_reconciler(c: CliContext, env: str, target: object) -> object:
    from paved.names import validate_name
    from pipelines.gitops.repo import GitOpsRepo
    from pipelines.manifest_source import GitManifestSource
    from pipelines.promotion.champion import finalize_champion
    from pipelines.reconciler import Reconciler, StateStore

    validate_name(env, "environment")
    repo = GitOpsRepo.open(c.settings.gitops_dir)
    registry = c.registry

    def champion_follows(manifest: object, commit: str) -> None:
        # Production's champion alias moves when the change takes effect, not before.
        finalize_champion(registry, manifest, commit=commit)  # type: ignore[arg-type]

    return Reconciler(
        source=GitManifestSource(c.settings.gitops_dir),
        registry=c.registry,
        target=target,  # type: ignore[arg-type]
        state=StateStore(c.settings.reconciler_dir),
        settings=c.settings,
        env=env,
        internal_token=target.gateway_spec.internal_token,  # type: ignore[attr-defined]
        on_applied=champion_follows,
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


def reconcile(
    ctx: typer.Context,
    env: Annotated[str, typer.Option(help="Environment to reconcile.")] = "staging",
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Poll Git and apply changes.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --watch.")] = 5.0,
    fmt: Annotated[out.Format, typer.Option("--format")] = out.Format.table,
) -> None:
    """Apply the repository's head for ENV to the running `paved serve` (exit 1 if any
    endpoint was refused; it keeps serving what it served before)."""
    from serving.deploy import RayServeTarget

    c: CliContext = ctx.obj
    if once == watch:
        raise typer.BadParameter("give exactly one of --once or --watch")
    rec = build_reconciler(c, env, RayServeTarget.join(c.settings))
    while True:
        report = rec.once()  # type: ignore[attr-defined]
        print_report(report, fmt)
        if once:
            raise typer.Exit(1 if report.refused else 0)
        time.sleep(interval)
