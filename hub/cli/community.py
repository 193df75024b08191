"""``hub community``: Community polygons."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from hub.settings import get_settings

if TYPE_CHECKING:
    from hub.store.communities import ImportReport

app = typer.Typer(help="Community polygons.", no_args_is_help=True)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="GeoJSON FeatureCollection of (multi)polygons."),
    id_field: str = typer.Option(..., help="Feature property holding the community id."),
    name_field: str = typer.Option(..., help="Feature property holding the display name."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the outcome as one JSON object on the last line."
    ),
) -> None:
    """Insert or update the communities of FILE (re-importing updates, never duplicates).

    Features sharing an id are parts of one community (islands, exclaves): each part is
    repaired, then they are unioned, and the parts merged per id are reported. Invalid rings
    are repaired with make_valid and reported; features that are not polygons or have no id
    are skipped with the reason. Exit 2 when the file cannot be read, 1 when the database
    refuses the import.
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
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    out.print(_table(file, report))


def _table(file: Path, report: ImportReport) -> Table:
    table = Table(title=f"communities from {file.name}", title_justify="left")
    table.add_column("outcome", style="bold")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("inserted", str(len(report.inserted)), _ids(report.inserted))
    table.add_row("updated", str(len(report.updated)), _ids(report.updated))
    table.add_row(
        "merged",
        str(len(report.merged)),
        "\n".join(f"{k}: {n} parts" for k, n in report.merged.items()),
    )
    table.add_row(
        "[yellow]repaired[/]",
        str(len(report.repaired)),
        "\n".join(f"{k}: {v}" for k, v in report.repaired.items()),
    )
    table.add_row(
        "[red]skipped[/]",
        str(len(report.skipped)),
        "\n".join(f"{k}: {v}" for k, v in report.skipped.items()),
    )
    return table


def _ids(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")
