"""``hub community``: Community polygons."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.settings import get_settings

app = typer.Typer(help="Community polygons.", no_args_is_help=True)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="GeoJSON FeatureCollection of (multi)polygons."),
    id_field: str = typer.Option(..., help="Feature property holding the community id."),
    name_field: str = typer.Option(..., help="Feature property holding the display name."),
) -> None:
    """Insert or update the communities of FILE (re-importing updates, never duplicates).

    Invalid rings are repaired with make_valid and reported; features that are not polygons
    or have no id are skipped with the reason. Exit 2 when the file cannot be read, 1 when the
    database refuses the import.
    """
    import psycopg

    from geo.geojson import GeoJSONError
    from hub.store.communities import import_communities
    from hub.store.db import connect

    out, err = Console(), Console(stderr=True)
    try:
        with connect(get_settings()) as conn:
            report = import_communities(conn, file, id_field, name_field)
    except GeoJSONError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except psycopg.Error as exc:
        err.print(f"[red]database error:[/] {str(exc).strip()}")
        raise typer.Exit(1) from None
    out.print(_table(file, report.inserted, report.updated, report.repaired, report.skipped))


def _table(
    file: Path,
    inserted: list[str],
    updated: list[str],
    repaired: dict[str, str],
    skipped: dict[str, str],
) -> Table:
    table = Table(title=f"communities from {file.name}", title_justify="left")
    table.add_column("outcome", style="bold")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("inserted", str(len(inserted)), _ids(inserted))
    table.add_row("updated", str(len(updated)), _ids(updated))
    table.add_row(
        "[yellow]repaired[/]",
        str(len(repaired)),
        "\n".join(f"{k}: {v}" for k, v in repaired.items()),
    )
    table.add_row(
        "[red]skipped[/]", str(len(skipped)), "\n".join(f"{k}: {v}" for k, v in skipped.items())
    )
    return table


def _ids(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")
