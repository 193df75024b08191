"""``hub api``: HTTP API server."""

from __future__ import annotations

import typer

app = typer.Typer(help="HTTP API server.", no_args_is_help=True)
