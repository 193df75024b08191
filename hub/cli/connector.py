"""``hub connector``: Connectors that publish community data as hub events."""

from __future__ import annotations

import typer

app = typer.Typer(help="Connectors that publish community data as hub events.", no_args_is_help=True)
