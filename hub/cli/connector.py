"""``hub connector``: Connectors that publish community data as hub events."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hub import logs

if TYPE_CHECKING:
    from geo.assign import CommunityIndex

app = typer.Typer(
    help="Connectors that publish community data as hub events.", no_args_is_help=True
)

EXIT_UNDELIVERED = 1  # the broker never came back: events wait in the outbox
EXIT_UNUSABLE = 2  # file, mapping or polygons cannot be read


@app.command()
def run(
    kind: str = typer.Argument(..., help="Connector kind (known: csv, xlsx, sql, cap)."),
    source: str | None = typer.Argument(
        None,
        help="The source: a CSV file (csv), an .xlsx/.ods workbook (xlsx), a SQLAlchemy URL "
        "(sql; default: the mapping's \\[sql] url), or a CAP file, a drop folder or an http(s) "
        "Atom/RSS feed URL (cap).",
    ),
    mapping: Path = typer.Option(
        ...,
        "--mapping",
        "-m",
        help="TOML mapping (csv, xlsx, sql: columns; cap: event types, geocodes, trust anchors).",
    ),
    rejects: Path | None = typer.Option(
        None,
        help="Write rejected rows here (CSV: original columns + _row, _reason; "
        "cap: document, found_in, identifier, sender + _row, _reason).",
    ),
    communities: Path | None = typer.Option(
        None,
        help="GeoJSON community polygons to fill rows without a community here (points "
        "within HUB_COMMUNITY_SNAP_M of one snap to the nearest; default: none, fusion "
        "assigns them from the hub's polygons).",
    ),
    id_field: str | None = typer.Option(None, help="Feature property holding the community id."),
    outbox: Path | None = typer.Option(
        None, help="Outbox file (default STATE_DIR/outbox/SYSTEM.sqlite); one per instance."
    ),
    max_wait: float = typer.Option(30.0, min=0, help="Seconds to keep retrying a down broker."),
    cursor: Path | None = typer.Option(
        None, help="Cursor file of xlsx/sql (default STATE_DIR/cursor/SYSTEM.sqlite)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (last line)."),
) -> None:
    """Publish every usable row of SOURCE as an event; report and optionally write the rejects.

    Rows without usable coordinates or time are not sent: they are counted with their reason
    (for cap: each alert is a row; one that cannot become an event is rejected with a reason
    naming the CAP element or rule).

    xlsx and sql keep a cursor in the state directory: a second run sends only rows that are
    new or changed (a changed row as a new event that refs the one it updates); cap remembers
    the files, alerts and feed entries it has read.

    Events pass through a durable outbox, so a broker outage loses nothing: the next run sends
    what is pending first. Exit 0 on success (even with rejects), 1 when events are left in the
    outbox, 2 when the file, the mapping or the polygons cannot be used.
    """
    from connectors.registry import load_connector
    from connectors.report import summary_table
    from connectors.run import RunOptions
    from connectors.settings import ConnectorSettings
    from hub.errors import HubError

    if not logging.getLogger().handlers:  # a host (tests, the demo) may have set logging up
        logs.configure("WARNING", json=False)  # warnings (no polygons, broker down) as text
    err = Console(stderr=True)
    try:
        settings = ConnectorSettings()
        connector = load_connector(kind).from_mapping_file(mapping, settings)
        index = _load_polygons(communities, id_field, settings.community_snap_m)
        with _progress(err, kind, source) as advance:
            options = RunOptions(index, rejects, outbox, max_wait, on_progress=advance)
            options.cursor_path = cursor
            report = connector.run(source, options)
    except (HubError, OSError) as exc:  # OSError: the rejects file, the outbox directory
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    err.print(summary_table(report))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    if not report.delivered:
        err.print(f"[red]{report.pending:,} events wait in {report.outbox}[/]; run again later")
        raise typer.Exit(EXIT_UNDELIVERED)


def _load_polygons(path: Path | None, id_field: str | None, snap_m: float) -> CommunityIndex | None:
    """A CommunityIndex from a GeoJSON file, or None (events then go without a community);
    points within ``snap_m`` metres of a polygon and in none snap to the nearest."""
    if path is None:
        return None
    if not id_field:
        raise typer.BadParameter("--communities needs --id-field (the property holding the id)")
    from geo.geojson import read_community_index

    return read_community_index(path, id_field, snap_m)


@contextmanager
def _progress(console: Console, kind: str, source: str | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields a callback taking the rows read so far."""
    total = _estimate_rows(Path(source)) if kind == "csv" and source else None
    name = Path(source).name if source and kind != "sql" else kind
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{name}: read, convert, send", total=total)
        yield lambda rows: progress.update(task, completed=rows)


def _estimate_rows(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
        return max(lines - 1, 0)  # minus the header; quoted newlines make it an estimate
    except OSError:
        return None  # open_csv reports it properly
