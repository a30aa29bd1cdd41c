"""`paved models`: train, register, list, show, history, alias."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import output as out
from cli.context import CliContext
from paved.kinds import TASKS

app = typer.Typer(help="Train, register and look up models.", no_args_is_help=True)

FormatOpt = Annotated[out.Format, typer.Option("--format", "-o", help="table or json")]


def _ctx(ctx: typer.Context) -> CliContext:
    obj: CliContext = ctx.obj
    return obj


def _owner_team(c: CliContext, team: str | None) -> str:
    """The team that will own what is registered.

    With PAVED_API_KEY it is the key's team (an admin key may name another with
    --team; the registry refuses any other key that tries). Without a key it is
    --team or PAVED_TEAM: a label the local user chooses, not an authenticated owner.
    """
    if c.key is not None:
        return team or c.key.team
    return team or c.settings.team


@app.command()
def train(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="tiny-gpt or credit-risk")],
    register: Annotated[str | None, typer.Option(help="Register as this model name.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same weights.")] = 0,
    team: Annotated[
        str | None,
        typer.Option(help="Owner team: default the key's team (PAVED_API_KEY), else PAVED_TEAM."),
    ] = None,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Train a bundled model on the CPU, log the run to MLflow, optionally register it."""
    from pipelines.train import train_and_log

    c = _ctx(ctx)
    outcome = train_and_log(
        kind,
        registry=c.registry,
        work_dir=c.settings.work_dir,
        actor=c.actor,
        team=_owner_team(c, team),
        seed=seed,
        register_as=register,
    )
    if fmt is out.Format.json:
        out.emit_json(outcome)
        return
    out.kv(
        f"trained {kind} (seed {seed})",
        [("run", outcome.run_id), *((k, f"{v:.4f}") for k, v in sorted(outcome.metrics.items()))],
    )
    if outcome.version:
        out.console.print(f"registered [bold]{outcome.version.ref}[/bold]")


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name to register under.")],
    run: Annotated[str | None, typer.Option(help="A run logged by Pavedpath.")] = None,
    source: Annotated[str | None, typer.Option(help="runs:/<run_id>/model URI.")] = None,
    path: Annotated[Path | None, typer.Option(help="A local model directory to upload.")] = None,
    task: Annotated[
        str, typer.Option(help=f"With --path: {' or '.join(TASKS)}.")
    ] = "text-generation",
    framework: Annotated[
        str, typer.Option(help="With --path: transformers or torch.")
    ] = "transformers",
    team: Annotated[
        str | None,
        typer.Option(help="Owner team: default the key's team (PAVED_API_KEY), else PAVED_TEAM."),
    ] = None,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Register a new version from a run, a runs:/ URI or a local directory."""
    from paved.errors import InvalidInput
    from paved.names import validate_choice, validate_name
    from pipelines.lineage import code_version
    from registry.safety import validate_source_uri
    from registry.schemas import FRAMEWORKS, MODEL_ARTIFACT_PATH, ModelPackage

    c = _ctx(ctx)
    validate_name(name)
    validate_choice(task, TASKS, "task")
    validate_choice(framework, FRAMEWORKS, "framework")
    given = [x for x in (run, source, path) if x is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --run, --source or --path", rule="one_source")
    if source is not None:
        uri = validate_source_uri(source, c.settings.allowed_source_prefixes)
        if not uri.startswith("runs:/"):
            raise InvalidInput(
                f"registering from {uri!r} is not supported yet; use a runs:/ URI or --path",
                rule="source_scheme",
            )
        run, _, artifact = uri.removeprefix("runs:/").partition("/")
        if artifact.strip("/") != MODEL_ARTIFACT_PATH:
            raise InvalidInput(
                f"a Pavedpath run holds its model under {MODEL_ARTIFACT_PATH}/; use "
                f"runs:/<run id>/{MODEL_ARTIFACT_PATH}",
                rule="source_runs_path",
            )
    if path is not None:
        package = ModelPackage(
            model_dir=path,
            team=_owner_team(c, team),
            task=task,
            framework=framework,
            git_commit=code_version(),
            dataset_digest="unknown",
            dataset_description="not recorded (registered from a local directory)",
        )
        info = c.registry.register_package(name, package, experiment=f"paved/{name}", actor=c.actor)
    else:
        assert run is not None
        info = c.registry.register_run(name, run, actor=c.actor)
    if fmt is out.Format.json:
        out.emit_json(info)
    else:
        out.console.print(f"registered [bold]{info.ref}[/bold] ({info.digest})")


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    fmt: FormatOpt = out.Format.table,
) -> None:
    """List registered models, or the versions of one model."""
    reg = _ctx(ctx).registry
    if name is None:
        models = reg.list_models()
        if fmt is out.Format.json:
            out.emit_json(models)
            return
        out.table(
            "registered models",
            ["name", "team", "latest", "aliases", "updated"],
            [
                (
                    m.name,
                    m.team,
                    m.latest_version,
                    ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
                    out.ts(m.updated_at),
                )
                for m in models
            ],
        )
        return
    versions = reg.list_versions(name)
    if fmt is out.Format.json:
        out.emit_json(versions)
        return
    out.table(
        f"versions of {name}",
        ["version", "aliases", "status", "digest", "commit", "registered by", "created"],
        [
            (
                v.version,
                ", ".join(v.aliases),
                v.status,
                v.digest[:23] + "…",
                v.lineage.git_commit[:12],
                v.lineage.registered_by,
                out.ts(v.created_at),
            )
            for v in versions
        ],
    )


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME/VERSION or NAME@ALIAS")],
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Show a version: lineage, params, metrics and the sha256 of every file."""
    d = _ctx(ctx).registry.describe(ref)
    if fmt is out.Format.json:
        out.emit_json(d)
        return
    lin = d.lineage
    out.kv(
        f"{d.ref}",
        [
            ("aliases", ", ".join(d.aliases) or "-"),
            ("status", d.status),
            ("created", out.ts(d.created_at)),
            ("registered by", lin.registered_by),
            ("owner team", lin.team),
            ("task", lin.task),
            ("framework", lin.framework),
            ("git commit", lin.git_commit),
            ("dataset digest", lin.dataset_digest),
            ("run", lin.run_id),
            ("source", d.source),
            ("digest", d.digest),
        ],
    )
    if d.metrics:
        out.table("metrics", ["metric", "value"], sorted(d.metrics.items()))
    if d.params:
        out.table("params", ["param", "value"], sorted(d.params.items()))
    out.table("artifact digests (sha256)", ["file", "sha256"], sorted(d.manifest.files.items()))


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    fmt: FormatOpt = out.Format.table,
) -> None:
    """Registrations and alias moves: who moved which alias from which version, when."""
    entries = _ctx(ctx).registry.history(name)
    if fmt is out.Format.json:
        out.emit_json(entries)
        return
    out.table(
        f"history of {name}",
        ["when", "event", "alias", "from", "to", "by", "detail"],
        [
            (
                out.ts(e.at),
                e.event,
                e.alias or "",
                e.from_version or "",
                e.version or "",
                e.actor,
                e.detail,
            )
            for e in entries
        ],
    )


alias_app = typer.Typer(help="Point aliases at versions (champion is protected).")
app.add_typer(alias_app, name="alias")


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: str,
    alias: str,
    version: str,
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Point ALIAS of NAME at VERSION."""
    c = _ctx(ctx)
    ev = c.registry.set_alias(name, alias, version, actor=c.actor, reason=reason)
    out.console.print(f"{ev.model}@{ev.alias}: {ev.from_version or '-'} → {ev.to_version}")


@alias_app.command("rm")
def alias_rm(
    ctx: typer.Context,
    name: str,
    alias: str,
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Remove ALIAS from NAME."""
    c = _ctx(ctx)
    ev = c.registry.remove_alias(name, alias, actor=c.actor, reason=reason)
    out.console.print(f"{ev.model}@{ev.alias}: {ev.from_version} → removed")
