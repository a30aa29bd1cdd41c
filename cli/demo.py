"""`paved demo` (the golden path so far) and `paved ui` (the MLflow UI on the registry)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import output as out
from cli.context import CliContext

if TYPE_CHECKING:
    from paved.schemas import Actor

DEMO_KEYS_FILE = "demo-keys.json"
# name -> (roles, holder): the bootstrap admin mints the others.
_DEMO_KEYS = {
    "engineer": (("ml-engineer",), "demo-engineer"),
    "approver": (("approver",), "demo-approver"),
    "app": (("app",), "demo-app"),
}


def demo(ctx: typer.Context) -> None:
    """Bootstrap the demo's keys, train both bundled models, register them as the
    demo engineer's key, and show what the registry holds."""
    from pipelines.train import train_and_log

    c: CliContext = ctx.obj
    actor, note = _demo_actor(c)
    out.console.print(note, highlight=False)
    for kind in ("credit-risk", "tiny-gpt"):
        out.console.print(f"[bold]training {kind}[/bold] on the CPU …")
        outcome = train_and_log(
            kind,
            registry=c.registry,
            work_dir=c.settings.work_dir,
            actor=actor,
            team=actor.team or c.settings.team,
            register_as=kind,
        )
        assert outcome.version is not None
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.metrics.items()))
        out.console.print(f"registered [bold]{outcome.version.ref}[/bold]: {metrics}")
    for m in c.registry.list_models():
        out.console.print(f"{m.name}: latest version {m.latest_version}")
    out.console.print(
        "\nNext: `paved models show credit-risk` and `paved models history credit-risk`; "
        "`paved ui` opens the MLflow UI (read-only) on the same registry."
    )


def _demo_actor(c: CliContext) -> tuple[Actor, str]:
    """Who the demo registers as: PAVED_API_KEY if set, else the demo engineer's key,
    minted on the first run (bootstrap admin included) and kept in PAVED_HOME."""
    if c.key is not None:
        return c.key.actor(), f"acting as key:{c.key.key_id} (PAVED_API_KEY)"
    from serving.keys import parse_roles, verify

    path = c.settings.home / DEMO_KEYS_FILE
    c.settings.ensure_home()
    store = c.key_store()
    try:
        if path.is_file():
            try:
                keys: dict[str, str] = dict(json.loads(path.read_text()))
            except (ValueError, TypeError):
                keys = {}
            note = f"demo keys from {path}"
        elif store.any_admin():
            return c.actor, (
                f"an admin key exists but {path} does not (this PAVED_HOME was not set up "
                "by the demo): registering as the local user; set PAVED_API_KEY to act as a key"
            )
        else:
            keys = {}
            keys["admin"], admin = store.bootstrap(team="platform", holder="demo-admin")
            for name, (roles, holder) in _DEMO_KEYS.items():
                keys[name] = store.mint(
                    by=admin, team=c.settings.team, roles=parse_roles(roles), holder=holder
                )[0]
            _write_private(path, json.dumps(keys, indent=2) + "\n")
            note = (
                f"bootstrapped an admin key and minted {', '.join(_DEMO_KEYS)} keys for team "
                f"{c.settings.team}; all four are in {path} (readable by you only)"
            )
        record = verify(keys.get("engineer", ""), store.snapshot())
    finally:
        store.dispose()
    if record is None:
        return c.actor, f"the engineer key in {path} is not active: registering as the local user"
    return record.actor(), note


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 5000,
    allow_writes: Annotated[
        bool,
        typer.Option(
            help="Let MLflow's write API through (an admin key only); it bypasses Pavedpath."
        ),
    ] = False,
) -> None:
    """Run the MLflow UI on Pavedpath's registry store, read-only: every write request
    (anything but reads and searches) is refused with 403 before it reaches MLflow."""
    from registry.ui import WRITES_BYPASS, serve_ui

    c: CliContext = ctx.obj
    if allow_writes:
        admin = c.admin_key("open the MLflow UI for writes")
        out.err_console.print(
            f"[yellow]warning[/yellow] --allow-writes (key:{admin.key_id}): {WRITES_BYPASS}",
            highlight=False,
        )
    c.settings.ensure_home()
    mode = "read and write" if allow_writes else "read-only"
    out.console.print(f"MLflow UI ({mode}) on http://{host}:{port}", highlight=False)
    serve_ui(
        c.settings.tracking_uri,
        c.settings.artifact_location,
        host=host,
        port=port,
        allow_writes=allow_writes,
    )
