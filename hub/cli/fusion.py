"""``hub fusion``: the fusion worker."""

from __future__ import annotations

import logging

import typer

from hub import logs
from hub.cli.workers import metrics_on_ready, on_signals
from hub.settings import get_settings

app = typer.Typer(
    help="Fusion worker: Kafka -> validated, deduplicated events in PostGIS.", no_args_is_help=True
)
log = logging.getLogger("hub.fusion")


@app.command()
def run(
    log_level: str = typer.Option("INFO", help="Log level (JSON lines on stderr)."),
) -> None:
    """Consume hub.events.v1 in a consumer group and store events in PostGIS until stopped.

    Serves Prometheus metrics on 127.0.0.1:HUB_FUSION_METRICS_PORT (0 disables them).
    SIGTERM/SIGINT finish the current batch, then leave the group.
    """
    from hub.fusion.worker import FusionWorker

    logs.configure(log_level)
    settings = get_settings()
    worker = FusionWorker(settings)

    on_signals(worker.stop, log)
    # Serving metrics doubles as the readiness signal: only once the group is joined.
    ready = metrics_on_ready(settings.fusion_metrics_port, worker.metrics.registry, log, "fusion")
    worker.run(on_ready=ready)


@app.command()
def recluster(
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
) -> None:
    """Partition every stored neighbourhood again under the current correlation rules
    (HUB_CORRELATION_RULES), in one transaction: after the rules changed, or after upgrading
    from the chaining model. Ids that disappear stay as aliases; warning flags and risk follow.
    A running fusion worker waits for it (the same sequence lock)."""
    import json

    from hub.fusion.recluster import recluster as run_recluster
    from hub.store.db import connect

    logs.configure("WARNING")
    with connect(get_settings()) as conn:
        result = run_recluster(conn, get_settings())
    if json_out:
        typer.echo(json.dumps(result.as_json()))
        return
    typer.echo(
        f"{result.reports:,} live reports partitioned: {result.open_before:,} -> "
        f"{result.open_after:,} open incidents, {result.changed:,} rebuilt, "
        f"{result.renamed:,} ids kept as aliases"
    )
