"""``hub bench``: Benchmarks (table + JSON under bench/results/)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks (table + JSON under bench/results/).", no_args_is_help=True)
