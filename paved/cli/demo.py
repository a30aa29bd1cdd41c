"""`paved demo` (the golden path so far) and `paved ui` (the MLflow UI on the registry)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from paved.cli import output as out
from paved.cli.context import CliContext


def demo(ctx: typer.Context) -> None:
    """Train both bundled models, register them, and show what the registry holds."""
    from pipelines.train import train_and_log

    c: CliContext = ctx.obj
    for kind in ("credit-risk", "tiny-gpt"):
        out.console.print(f"[bold]training {kind}[/bold] on the CPU …")
        outcome = train_and_log(
            kind,
            registry=c.registry,
            work_dir=c.settings.work_dir,
            actor=c.actor,
            team=c.settings.team,
            register_as=kind,
        )
        assert outcome.version is not None
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.metrics.items()))
        out.console.print(f"registered [bold]{outcome.version.ref}[/bold]: {metrics}")
    for m in c.registry.list_models():
        out.console.print(f"{m.name}: latest version {m.latest_version}")
    out.console.print(
        "\nNext: `paved models show credit-risk` and `paved models history credit-risk`; "
        "`paved ui` opens the MLflow UI on the same registry."
    )


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
) -> None:
    """Run the MLflow UI on Pavedpath's registry store."""
    c: CliContext = ctx.obj
    c.settings.ensure_home()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        c.settings.tracking_uri,
        "--default-artifact-root",
        c.settings.artifact_location,
        "--host",
        host,
        "--port",
        str(port),
    ]
    out.console.print(f"MLflow UI on http://{host}:{port}")
    raise typer.Exit(subprocess.call(cmd))
