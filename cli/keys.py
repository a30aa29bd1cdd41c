"""`paved keys`: bootstrap the first admin key, then create, list and revoke keys.

Only an admin key (PAVED_API_KEY) creates or revokes keys; the first one comes from
`paved keys bootstrap`, which works once. Every input is checked before the key table
is touched, so a refused command leaves neither a table nor a row behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli import output as out
from cli.context import CliContext

if TYPE_CHECKING:
    from serving.keys import ApiKey

app = typer.Typer(
    help="API keys: a team, roles and a holder per key; stored only as a hash.",
    no_args_is_help=True,
)

HolderOpt = Annotated[
    str,
    typer.Option(
        help="Who holds the key (a person or a service); four-eyes checks compare holders."
    ),
]


def _shown(record: ApiKey) -> None:
    out.err_console.print(
        f"key {record.key_id} for team {record.team}, held by {record.holder} "
        f"({', '.join(sorted(r.value for r in record.roles))}); it is shown only now:",
        highlight=False,
    )


@app.command()
def bootstrap(
    ctx: typer.Context,
    holder: HolderOpt,
    team: Annotated[str, typer.Option(help="Team of the admin key.")] = "platform",
) -> None:
    """Create the first admin key and print it once; refused once any admin key exists."""
    from paved.names import validate_name

    c: CliContext = ctx.obj
    team, holder = validate_name(team, "team"), validate_name(holder, "holder")
    c.settings.ensure_home()
    store = c.key_store()
    try:
        key, record = store.bootstrap(team=team, holder=holder)
    finally:
        store.dispose()
    _shown(record)
    print(key)


@app.command()
def create(
    ctx: typer.Context,
    team: Annotated[str, typer.Option(help="Team the key belongs to.")],
    role: Annotated[
        list[str],
        typer.Option(help="Role (repeatable): app, ml-engineer, approver, viewer, admin."),
    ],
    holder: HolderOpt,
) -> None:
    """Create a key and print it once (admin key needed); only its hash is stored."""
    from paved.names import validate_name
    from serving.keys import parse_roles

    c: CliContext = ctx.obj
    roles = parse_roles(role)
    team, holder = validate_name(team, "team"), validate_name(holder, "holder")
    admin = c.admin_key("create keys")
    store = c.key_store()
    try:
        key, record = store.mint(by=admin, team=team, roles=roles, holder=holder)
    finally:
        store.dispose()
    _shown(record)
    print(key)


@app.command("list")
def list_(
    ctx: typer.Context, fmt: Annotated[out.Format, typer.Option("--format")] = out.Format.table
) -> None:
    """List keys (ids, teams, roles, holders, who minted them; never the secrets)."""
    c: CliContext = ctx.obj
    store = c.key_store()
    try:
        keys = store.list()
    finally:
        store.dispose()
    if fmt is out.Format.json:
        out.emit_json(keys)
        return
    out.table(
        "API keys",
        ["id", "team", "roles", "holder", "minted by", "created", "revoked"],
        [
            (
                k.key_id,
                k.team,
                ", ".join(sorted(r.value for r in k.roles)),
                k.holder or "(unknown)",
                k.created_by,
                out.ts(k.created_at),
                out.ts(k.revoked_at) if k.revoked_at else "",
            )
            for k in keys
        ],
    )


@app.command()
def revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key by id (admin key needed); gateways stop accepting it within seconds."""
    from serving.keys import validate_key_id

    c: CliContext = ctx.obj
    key_id = validate_key_id(key_id)
    admin = c.admin_key("revoke keys")
    store = c.key_store()
    try:
        store.revoke(key_id, by=admin)
    finally:
        store.dispose()
    out.console.print(f"revoked {key_id}")
