"""``hub fusion``: Fusion worker: Kafka -> validated, deduplicated events in PostGIS."""

from __future__ import annotations

import typer

app = typer.Typer(help="Fusion worker: Kafka -> validated, deduplicated events in PostGIS.", no_args_is_help=True)
