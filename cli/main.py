"""The `paved` command: one sub-command module per noun, thin over the library."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli import demo, gitops, keys, models, reconcile, serve
from cli import eval as eval_cmd
from cli import output as out
from cli.context import CliContext
from paved.errors import PavedError

app = typer.Typer(
    name="paved",
    help="Pavedpath: the paved path for models, from the registry to production inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
gitops.register(app)  # gitops ..., promote, approve, rollback
app.command("serve")(serve.serve)
app.command("reconcile")(reconcile.reconcile)
app.command("demo")(demo.demo)
app.command("ui")(demo.ui)
app.command("eval")(eval_cmd.eval_)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More logging.")] = False,
) -> None:
    ctx.obj = CliContext(verbose=verbose)


def main() -> None:
    """Entry point: Pavedpath errors become one clear line and a non-zero exit."""
    try:
        app()
    except PavedError as exc:
        rule = f" (rule: {exc.rule})" if exc.rule else ""
        from rich.markup import escape

        out.err_console.print(
            f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}{rule}')}", highlight=False
        )
        sys.exit(2 if 400 <= exc.status < 500 else 1)


if __name__ == "__main__":
    main()
