"""``hub community``: Community polygons."""

from __future__ import annotations

import typer

app = typer.Typer(help="Community polygons.", no_args_is_help=True)
