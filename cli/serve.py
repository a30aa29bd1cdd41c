"""`paved serve`: deploy the endpoints in a manifest folder and serve until stopped."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from cli import output as out
from cli.context import CliContext


def serve(
    ctx: typer.Context,
    manifests: Annotated[
        Path | None, typer.Option(help="Folder of Endpoint manifests (*.yaml).")
    ] = None,
    env: Annotated[
        str | None, typer.Option(help="GitOps environment (with the reconciler).")
    ] = None,
    host: Annotated[str, typer.Option(help="Gateway bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
) -> None:
    """Start Ray Serve with the gateway and a replica set per endpoint version."""
    from paved.errors import InvalidInput
    from paved.manifest import load_endpoints
    from serving import deploy

    c: CliContext = ctx.obj
    if (env is None) == (manifests is None):
        raise InvalidInput("give exactly one of --manifests DIR or --env ENV", rule="manifests")
    if env is not None:
        _serve_env(c, env, host, port)
        return
    assert manifests is not None
    endpoints = load_endpoints(manifests)
    from serving.internal_auth import new_token

    token = new_token()
    plan = deploy.plan(endpoints, c.registry, c.settings, internal_token=token)
    deploy.check_pins(plan, c.registry)  # a digest the folder pins must be the registry's
    out.console.print(f"starting Ray Serve with {len(plan.replicas)} model replica set(s) …")
    target = deploy.RayServeTarget(c.settings, host=host, port=port, internal_token=token)
    target.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        target.ensure_replicas(plan)
        target.apply_routes(plan)
        base = f"http://{host}:{port}"
        out.console.print(f"[bold]gateway[/bold] {base}")
        for ep in endpoints:
            proto = plan.protocols[ep.name]
            url = (
                f"{base}/v1 (model={ep.name})"
                if proto == "openai"
                else (f"{base}/v2/models/{ep.name}/infer")
            )
            out.console.print(f"  {ep.name}: {ep.spec.model} v{ep.spec.champion.version} → {url}")
        out.console.print("serving; Ctrl-C or SIGTERM drains in-flight requests and stops")
        stop.wait()
    finally:
        out.console.print("draining …")
        target.shutdown()
        out.console.print("stopped")


def _serve_env(c: CliContext, env: str, host: str, port: int) -> None:
    """The gateway plus a reconciler loop that applies the GitOps repo's head for ENV."""
    from cli.reconcile import build_reconciler, print_pass
    from serving import deploy
    from serving.internal_auth import new_token

    target = deploy.RayServeTarget(c.settings, host=host, port=port, internal_token=new_token())
    target.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rec = build_reconciler(c, env, target)
    try:
        out.console.print(f"[bold]gateway[/bold] http://{host}:{port} (environment {env})")
        # The loop outlives every pass's error: recorded, retried with backoff.
        rec.run(  # type: ignore[attr-defined]
            stop,
            c.settings.reconcile_interval_s,
            on_pass=lambda r, rep: print_pass(r, rep, out.Format.table),
        )
    finally:
        out.console.print("draining …")
        target.shutdown()
        out.console.print("stopped")
