"""`paved gitops`, `paved promote`, `paved approve`, `paved rollback`: promotions as Git changes.

Thin over ``pipelines.gitops`` and ``pipelines.promotion``; the acting identity and its
roles come from PAVED_API_KEY, or the local user as an ML engineer (see CliContext). The
local user is a name from the environment: it may promote and roll back outside the
protected environments with the gate, never approve, skip a gate or touch production.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import output as out
from cli.context import CliContext
from paved.errors import InvalidInput
from paved.manifest import Endpoint

if TYPE_CHECKING:
    from pipelines.gitops.repo import GitOpsRepo
    from pipelines.promotion import Promotions
    from registry.schemas import ModelVersionInfo

app = typer.Typer(
    help="The GitOps repository: endpoint manifests and team policies in Git.",
    no_args_is_help=True,
)

FormatOpt = Annotated[out.Format, typer.Option("--format", "-o", help="table or json")]
EnvOpt = Annotated[str, typer.Option("--env", help="Environment (staging, prod, ...).")]


def register(root: typer.Typer) -> None:
    """Add `gitops` and the top-level promotion commands to the root command."""
    root.add_typer(app, name="gitops")
    root.command("promote")(promote)
    root.command("approve")(approve)
    root.command("rollback")(rollback)


class _LazyCatalog:
    """The registry, opened only if a command looks a version up (MLflow is slow to import)."""

    def __init__(self, c: CliContext) -> None:
        self._c = c

    def get(self, ref: str) -> ModelVersionInfo:
        return self._c.registry.get(ref)


def _repo(c: CliContext) -> GitOpsRepo:
    from pipelines.gitops.repo import GitOpsRepo

    return GitOpsRepo.open(c.settings.gitops_dir)


def _promotions(c: CliContext) -> Promotions:
    from pipelines.promotion import Promotions

    # Approvals compare the minting chains of both keys, read from the key store.
    return Promotions(_repo(c), _LazyCatalog(c), keys=c.key_store())


# ------------------------------------------------------------------ gitops


@app.command()
def init(
    ctx: typer.Context,
    remote: Annotated[
        str | None, typer.Option(help="Clone this Git remote instead of a local repository.")
    ] = None,
) -> None:
    """Create the GitOps repository under PAVED_HOME (or clone --remote) with its layout."""
    from pipelines.gitops.repo import GitOpsRepo

    c: CliContext = ctx.obj
    c.settings.ensure_home()
    repo = GitOpsRepo.init(c.settings.gitops_dir, actor=c.actor, remote=remote)
    where = f" (clone of {remote})" if remote else ""
    out.console.print(
        f"GitOps repository at {repo.path}{where}, main at {(repo.head() or '')[:12]}"
    )


@app.command()
def schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path("."),
) -> None:
    """Write endpoint.schema.json and team.schema.json (JSON Schema, for editors and CI)."""
    from pipelines.gitops.schemas import write_schemas

    for path in write_schemas(out_dir):
        out.console.print(f"wrote {path}")


@app.command()
def log(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    env: EnvOpt,
    at: Annotated[
        str | None, typer.Option(help="Only what Git declared at this time (ISO 8601; UTC).")
    ] = None,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """The changes to an endpoint's manifest on main: what was declared to serve, when."""
    repo = _repo(ctx.obj)
    if at is not None:
        change = repo.what_was_serving(endpoint, env, _parse_time(at))
        changes = [change] if change else []
    else:
        changes = repo.changes(endpoint, env)
    if fmt is out.Format.json:
        out.emit_json(changes)
        return
    if at is not None and not changes:
        out.console.print(f"nothing was declared for {env}/{endpoint} at {at}")
        return
    out.table(
        f"{env}/{endpoint}" + (f" at {at}" if at else ""),
        ["when", "action", "by", "champion", "challenger", "commit", "promotion", "subject"],
        [
            (
                out.ts(ch.committed_at),
                ch.action or "",
                ch.author,
                ch.manifest.spec.champion.version if ch.manifest else "-",
                _challenger(ch.manifest),
                ch.commit[:12],
                ch.promotion_id or "",
                ch.error or ch.subject,
            )
            for ch in changes
        ],
    )


@app.command()
def pending(ctx: typer.Context, fmt: FormatOpt = out.Format.table) -> None:
    """Promotions waiting for an approval."""
    waiting = _promotions(ctx.obj).pending()
    if fmt is out.Format.json:
        out.emit_json(waiting)
        return
    out.table(
        "pending promotions",
        ["id", "model", "to", "where", "mode", "by", "gate"],
        [
            (p.id, p.model, p.to_version, f"{p.env}/{p.endpoint}", p.mode, p.actor, p.gate)
            for p in waiting
        ],
    )


# --------------------------------------------------------------- top level


def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    endpoint: Annotated[str, typer.Option(help="Endpoint to promote it on.")],
    env: EnvOpt,
    canary: Annotated[
        str | None, typer.Option(help="Canary traffic steps in percent, e.g. 5,25,50,100.")
    ] = None,
    shadow: Annotated[bool, typer.Option(help="Mirror traffic to it; no live answers.")] = False,
    skip_gate: Annotated[
        bool, typer.Option(help="Promote without the evaluation gate (an admin key only).")
    ] = False,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Run the gate, then write the promotion to Git (production waits for an approval)."""
    from pipelines.promotion import evaluation_gate
    from pipelines.promotion import skip_gate as skipped

    c: CliContext = ctx.obj
    steps = _parse_steps(canary) if canary is not None else None
    if skip_gate:
        gate = skipped(c.actor)
    else:
        found = evaluation_gate(c.registry, c.actor)
        if found is None:
            raise InvalidInput(
                "no promotion gate is installed (evaluation.gates); promoting without one "
                "needs --skip-gate, which needs the admin role",
                rule="gate_unavailable",
            )
        gate = found
    p = _promotions(c).promote(
        name, version, endpoint, env, actor=c.actor, gate=gate, canary_steps=steps, shadow=shadow
    )
    if fmt is out.Format.json:
        out.emit_json(p)
        return
    out.console.print(
        f"promoted {p.model} v{p.to_version} to {p.env}/{p.endpoint} as {p.mode} "
        f"(was {p.from_version or '-'}); gate {p.gate}"
    )
    if p.state == "pending":
        out.console.print(
            f"promotion [bold]{p.id}[/bold] waits on branch {p.branch} for an approval by "
            f"another identity: paved approve {p.id}"
        )
    else:
        out.console.print(f"committed {p.commit[:12]} on main (promotion {p.id})")


def approve(
    ctx: typer.Context,
    promotion_id: Annotated[str, typer.Argument(help="The id `paved promote` printed.")],
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Approve a pending production promotion (approver role, not its author)."""
    c: CliContext = ctx.obj
    a = _promotions(c).approve(promotion_id, actor=c.actor)
    if fmt is out.Format.json:
        out.emit_json(a)
        return
    out.console.print(
        f"approved {a.promotion_id}: {a.model} v{a.to_version} on {a.env}/{a.endpoint} "
        f"(promoted by {a.promoted_by}); merged as {a.commit[:12]}"
    )


def rollback(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    env: EnvOpt,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Revert the last change to an endpoint's manifest (a new commit; history stays)."""
    c: CliContext = ctx.obj
    r = _promotions(c).rollback(endpoint, env, actor=c.actor)
    if fmt is out.Format.json:
        out.emit_json(r)
        return
    out.console.print(
        f"rolled back {r.env}/{r.endpoint}: reverted {r.reverted[:12]} in {r.commit[:12]}; "
        f"champion v{r.to_version} (v{r.from_version} stops receiving its traffic)"
    )


# ---------------------------------------------------------------- parsing


def _parse_steps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise InvalidInput(
            f"--canary {text!r} must be percentages separated by commas, e.g. 5,25,50,100",
            rule="canary_steps",
        ) from None


def _parse_time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--at {text!r} must be an ISO 8601 time, e.g. 2025-01-31T14:00:00Z", rule="time"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _challenger(manifest: Endpoint | None) -> str:
    if manifest is None or manifest.spec.challenger is None:
        return "-"
    ch = manifest.spec.challenger
    weight = f" {ch.weight}%" if ch.mode == "canary" else ""
    return f"{ch.version} ({ch.mode}{weight})"
