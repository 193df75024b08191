"""``hub bench``: Benchmarks (table + JSON under bench/results/)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from hub import logs
from hub.bench.report import RESULTS_DIR, json_line, machine_line, results_table, write_results
from hub.settings import get_settings

app = typer.Typer(help="Benchmarks (table + JSON under bench/results/).", no_args_is_help=True)


@app.command()
def ingest(
    events: int = typer.Option(200_000, "--events", min=1, help="Events pre-filled for drain."),
    rate: int = typer.Option(2_000, "--rate", min=1, help="Events/s of the lag phase."),
    sustained_seconds: float = typer.Option(
        20.0, "--sustained-seconds", min=0.5, help="How long producers run flat out."
    ),
    sustained_events: int | None = typer.Option(
        None, "--sustained-events", min=1, help="Stop each sustained producer at this count."
    ),
    lag_seconds: float = typer.Option(20.0, "--lag-seconds", min=0.5, help="Lag phase length."),
    producers: int = typer.Option(1, "--producers", min=1, help="Sustained producer processes."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Use this Kafka (own topics) instead of starting a broker."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Use this database (never dropped) instead of a new one."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the bench database and process logs."),
    results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="Where JSON goes."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as one JSON line."),
) -> None:
    """End-to-end ingest: drain rate, sustained rate with producers, lag at a fixed rate.

    Runs in an environment of its own (a broker on a free port, a throw-away database
    hub_bench_*, the SF neighbourhoods as communities, `hub fusion run` as a subprocess) and
    stops and drops all of it at the end, also on failure or Ctrl-C. Targets on the reference
    2-core machine: drain >= 20,000 events/s, sustained >= 10,000 events/s, lag p99 <= 500 ms
    at 2,000 events/s. Exits 1 when the counts do not add up (lost or duplicated events);
    a missed target is reported, not an error.
    """
    from hub.bench.ingest import BenchFailed, IngestOptions, run_ingest, table_rows

    logs.configure("ERROR", json=False)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # our own clients: only real trouble
    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal:  # piped: 80 columns would wrap every row of the table
        out = Console(width=110)
    opts = IngestOptions(
        events=events,
        rate=rate,
        sustained_seconds=sustained_seconds,
        sustained_events=sustained_events,
        lag_seconds=lag_seconds,
        producers=producers,
        bootstrap=bootstrap,
        database_url=database_url,
        keep=keep,
    )
    try:
        result = run_ingest(opts, get_settings(), err)
    except BenchFailed as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    path = write_results("ingest", result, results_dir)
    out.print(results_table(f"hub bench ingest ({events:,} events)", table_rows(result)))
    out.print(machine_line(result["machine"]), highlight=False)
    out.print(f"results: {path}", highlight=False)
    if json_out:
        print(json_line(result), flush=True)
    if not result["checks_ok"]:
        raise typer.Exit(1)
