"""Entry point of the ``hub`` command: wires the command groups together."""

from __future__ import annotations

import typer

from hub.cli import db

app = typer.Typer(
    name="hub",
    help="Community Risk Hub: report once, share everywhere, verified, in seconds.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
