"""``hub up|down|status``: the local stack (broker, migrations, fusion worker, API)."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import logs
from hub.settings import get_settings
from hub.stack import local, probes

EXIT_SOME_DOWN = 3

LOG_LEVEL = typer.Option("WARNING", help="Log level of the hub's own JSON logs (stderr).")


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _status_table(services: list[local.ServiceStatus]) -> Table:
    table = Table(title="Local stack")
    for column in ("service", "state", "ready", "pid", "uptime"):
        table.add_column(column, no_wrap=True)
    table.add_column("address / detail", overflow="fold")  # URLs must stay whole to be copied
    for s in services:
        ready = "[green]yes[/]" if s.ready else "[red]no[/]"
        where = f"{s.address}\n[dim]{s.detail}[/]" if s.detail else s.address
        table.add_row(s.name, s.state, ready, str(s.pid or "-"), _uptime(s.uptime_s), where)
    return table


def _url_table() -> Table:
    table = Table(title="Open")
    table.add_column("what", no_wrap=True)
    table.add_column("where", overflow="fold")
    for what, where in probes.urls(get_settings()).items():
        table.add_row(what, where)
    return table


def up(log_level: str = LOG_LEVEL) -> None:
    """Start the local stack and return once every service is ready.

    In dependency order: the Kafka-compatible broker (skipped when HUB_KAFKA_BOOTSTRAP names an
    external Kafka; adopted when one already listens on HUB_BROKER_PORT), migrations (database
    schema and topics), the fusion worker and the API. Only what is missing or dead is started,
    so it is safe to re-run, e.g. after a fusion worker died. Pid files and logs live under
    HUB_STATE_DIR (default .hub). Exits 1, naming the service and showing its log, on failure.
    """
    logs.configure(log_level)
    console = Console()
    columns = (
        SpinnerColumn(finished_text="[green]✔[/]"),
        TextColumn("[bold]{task.fields[service]:<11}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks = {n: bar.add_task("waiting", service=n, total=1) for n in local.ORDER}

        def progress(service: str, message: str, finished: bool) -> None:
            bar.update(tasks[service], description=message, completed=1 if finished else 0)

        try:
            report = local.up(progress=progress)
        except local.StackError as exc:
            bar.stop()
            console.print(f"[red bold]{exc.service} did not come up[/]")
            console.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(1) from exc
    console.print(_status_table(report.services))
    console.print(_url_table())


def down(
    timeout: float = typer.Option(
        local.STOP_TIMEOUT_S, help="Seconds between SIGTERM and SIGKILL."
    ),
    log_level: str = LOG_LEVEL,
) -> None:
    """Stop the services this stack started (API, fusion worker, broker), in that order.

    Only processes named by the pid files under HUB_STATE_DIR whose start time still matches are
    signalled: an adopted or external broker, or a recycled pid, is left alone. Safe to re-run.
    """
    logs.configure(log_level)
    console = Console()
    table = Table(title="Stopped")
    table.add_column("service")
    table.add_column("outcome")
    for name, outcome in local.down(timeout_s=timeout).items():
        table.add_row(name, outcome)
    console.print(table)


def status(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    log_level: str = LOG_LEVEL,
) -> None:
    """Show each service: state, pid, address, uptime and readiness.

    Exits 0 when every service is ready, 3 when some are down or not ready.
    """
    logs.configure(log_level)
    services = local.status()
    ok = local.all_ready(services)
    if as_json:
        body = {"ready": ok, "services": {s.name: asdict(s) for s in services}}
        typer.echo(json.dumps(body))
    else:
        Console().print(_status_table(services))
    if not ok:
        raise typer.Exit(EXIT_SOME_DOWN)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
