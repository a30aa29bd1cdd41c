"""`paved keys`: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from paved.cli import output as out
from paved.cli.context import CliContext

app = typer.Typer(
    help="API keys: a team and roles per key; stored only as a hash.", no_args_is_help=True
)


def _store(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from serving.keys import KeyStore

    c: CliContext = ctx.obj
    c.settings.ensure_home()
    return KeyStore(c.settings.tracking_uri)


@app.command()
def create(
    ctx: typer.Context,
    team: Annotated[str, typer.Option(help="Team the key belongs to.")],
    role: Annotated[
        list[str],
        typer.Option(help="Role (repeatable): app, ml-engineer, approver, viewer, admin."),
    ],
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from serving.keys import parse_roles

    c: CliContext = ctx.obj
    roles = parse_roles(role)
    key, record = _store(ctx).create(team=team, roles=roles, created_by=c.settings.actor)
    out.err_console.print(
        f"key {record.key_id} for team {record.team} "
        f"({', '.join(sorted(r.value for r in roles))}); it is shown only now:"
    )
    print(key)


@app.command("list")
def list_(
    ctx: typer.Context, fmt: Annotated[out.Format, typer.Option("--format")] = out.Format.table
) -> None:
    """List keys (ids, teams, roles; never the secrets)."""
    keys = _store(ctx).list()
    if fmt is out.Format.json:
        out.emit_json(keys)
        return
    out.table(
        "API keys",
        ["id", "team", "roles", "created by", "created", "revoked"],
        [
            (
                k.key_id,
                k.team,
                ", ".join(sorted(r.value for r in k.roles)),
                k.created_by,
                out.ts(k.created_at),
                out.ts(k.revoked_at) if k.revoked_at else "",
            )
            for k in keys
        ],
    )


@app.command()
def revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key by id; gateways stop accepting it within seconds."""
    _store(ctx).revoke(key_id)
    out.console.print(f"revoked {key_id}")
