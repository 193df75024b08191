"""``hub db``: database schema management."""

from __future__ import annotations

import typer
from rich.console import Console

from hub.settings import get_settings
from hub.store.migrate import upgrade as run_upgrade

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Create the database if missing and apply every migration (safe to re-run)."""
    settings = get_settings()
    run_upgrade(settings)
    Console(stderr=True).print(f"[green]database up to date[/] ({settings.sync_database_url})")
