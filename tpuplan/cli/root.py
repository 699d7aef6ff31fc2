"""`plan --version`: the options of `plan` itself, before any command."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuplan import __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tpuplan {__version__}")
        raise typer.Exit()


def register(app: typer.Typer) -> None:
    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", is_eager=True, callback=_print_version, help="Print tpuplan's version and exit."),
        ] = False,
    ) -> None:
        """The options of `plan` itself (the commands' help: `plan COMMAND --help`)."""
