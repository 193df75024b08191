"""``hub demo``: the SF replay on the real stack (broker, fusion, PostGIS, API)."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.live import Live

from hub import logs
from hub.settings import Settings, get_settings

if TYPE_CHECKING:
    from hub.demo.clients import DemoClient


def register(app: typer.Typer) -> None:
    app.command(name="demo", help=DEMO_HELP)(demo)


DEMO_HELP = (
    "Replay December 2018's real SFPD incident reports through one CSV connector per SF "
    "neighbourhood (41 communities) into Kafka; fusion stores them in PostGIS and fuses them "
    "into incidents, warnings and risk per grid cell; the API serves them. Then a scripted "
    "scenario through the API (synthetic gauge readings and reports at real places): a flood "
    "along Mission Creek across two communities, and a rumour a department refutes. Shows a "
    "live view, a summary per community, the incidents, risk colours, warnings, the scenario, "
    "an SVG map (<state dir>/demo/picture.svg) and the URLs to open. Without --once the stack "
    "keeps running until Ctrl-C, then what the demo started is stopped."
)


def demo(
    once: bool = typer.Option(
        False, "--once", help="Exit 0 once the replay has drained, stopping what it started."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on the last line of stdout."
    ),
    log_level: str = typer.Option("WARNING", help="Log level of the demo process itself."),
) -> None:
    """Run the SF replay demo (see DEMO_HELP)."""
    from hub.stack import local

    logs.configure(log_level)
    # The picture's stages (incidents, warnings, risk) on, whatever the default.
    settings = get_settings().model_copy(update={"fusion_incidents": True})
    out = Console(stderr=as_json)  # with --json, stdout carries only the JSON line
    with out.status("starting the local stack (broker, migrations, fusion, API)..."):
        started = _start_stack(settings)
    try:
        summary = _replay(settings, out)
        made = _register_clients(settings)
        summary["clients"] = _clients(settings, made)
        analyst = next(c for c in made if c.kind == "analyst")
        with out.status("the scenario (a flood, a rumour) through the API, then the picture..."):
            summary["scenario"] = _scenario(settings, analyst)
            summary |= _picture(settings, analyst)
        out.print(_summary_renderables(summary))
        out.print(local_urls_table(settings))
        _print_clients(out, summary["clients"])
        _print_picture(out, summary, settings, analyst)
        ok = _check_totals(summary, out)
        if as_json:
            print(json.dumps(summary, separators=(",", ":")), flush=True)
        if not ok:
            raise typer.Exit(1)
        if not once:
            out.print(
                "[bold green]The hub is running.[/] Press Ctrl-C to stop what the demo started."
            )
            _wait_for_ctrl_c()
    finally:
        if started:
            local.down(settings, services=started)


def _start_stack(settings: Settings) -> tuple[str, ...]:
    """``up``, and the services this call started; if ``up`` fails half-way, what it had
    started is stopped again (``up`` itself leaves them, for ``hub status`` and the logs)."""
    from hub.stack import local

    running = {s.name for s in local.status(settings) if s.state in ("running", "external")}
    try:
        return local.up(settings).started
    except local.StackError:
        local.down(settings, services=tuple(s for s in local.MANAGED if s not in running))
        raise


def _replay(settings: Settings, out: Console) -> dict[str, Any]:
    from hub.demo import replay as r
    from hub.demo.counters import community_counts, fusion_counters
    from hub.demo.view import LiveView, consumer_lag
    from hub.stack.probes import fusion_metrics_url

    communities = r.import_sf_communities(settings)
    out.print(f"[bold]{communities}[/] communities imported from {r.NEIGHBOURHOODS.name}")
    before, per_before = fusion_counters(settings), community_counts(settings)
    started_at = datetime.now(UTC)
    work_dir = Path(settings.state_dir) / "demo"
    progress = r.Progress()
    reports: list[Any] = []
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            reports.extend(r.replay(settings, work_dir, progress))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=_run, name="demo-replay")
    worker.start()
    metrics_url = fusion_metrics_url(settings)
    view = LiveView()
    with Live(console=out, refresh_per_second=4, transient=False) as live:

        def tick() -> None:
            view.bar.update(view.task, total=progress.rows_total or None)
            feeds = f"{progress.feeds_done}/{progress.feeds}"
            delta = fusion_counters(settings) - before
            live.update(view.render(progress.total_read, feeds, delta, consumer_lag(metrics_url)))

        while worker.is_alive():
            tick()
            time.sleep(0.25)
        if errors:
            raise errors[0]
        delta = r.wait_drained(settings, before, progress.produced, tick=tick)
        tick()
    return r.summarise(settings, reports, delta, per_before, started_at)


def _register_clients(settings: Settings) -> list[DemoClient]:
    from hub.demo.clients import register_demo_clients

    return register_demo_clients(settings)


def _clients(settings: Settings, made: list[DemoClient]) -> list[dict[str, Any]]:
    """What each client (one per principal kind) sees through the running API."""
    from dataclasses import asdict

    from hub.demo.clients import what_each_sees

    seen = what_each_sees(settings, made)
    return [{**asdict(c), **s} for c, s in zip(made, seen, strict=True)]


def _scenario(settings: Settings, analyst: DemoClient) -> dict[str, Any]:
    from hub.demo import scenario

    return scenario.run(settings, analyst)


def _picture(settings: Settings, analyst: DemoClient) -> dict[str, Any]:
    """The fused picture as the analyst sees it: counts, and the SVG map (its path)."""
    from hub.demo import picture

    seen = picture.fetch(settings, analyst)
    path = picture.write_svg(seen, Path(settings.state_dir).resolve() / "demo" / "picture.svg")
    return {**picture.summary(seen), "picture": {"path": str(path), "as_of": seen.as_of}}


def _print_picture(
    out: Console, summary: dict[str, Any], settings: Settings, analyst: DemoClient
) -> None:
    from rich.text import Text

    from hub.demo.clients import curl_line
    from hub.demo.view import incidents_table, risk_table, scenario_panel, warnings_table
    from hub.stack.probes import api_url

    base, s = api_url(settings), summary["scenario"]
    flood, rumour = (f"/v1/incidents/{s[k]}" for k in ("flood_incident", "rumour_incident"))
    out.print(incidents_table(summary["incidents"]))
    out.print(risk_table(summary["risk"]))
    out.print(warnings_table(summary["warnings"]))
    out.print(scenario_panel(s, base + flood, base + rumour))
    for what, path in (("the flood", flood), ("the refuted rumour", rumour)):
        out.print(Text(f"# {what}, as the analyst", style="bold"))
        out.print(
            Text(curl_line(base, analyst.client_id, analyst.client_secret, path)), soft_wrap=True
        )
    out.print(f"[bold]Map[/] of the picture: {summary['picture']['path']}")


def _print_clients(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.text import Text

    from hub.demo.view import clients_table

    out.print(clients_table(rows))
    for r in rows:  # plain text, never wrapped: each curl line must paste as one line
        out.print(Text(f"# {r['kind']}", style="bold"))
        out.print(Text(r["curl"]), soft_wrap=True)


def _summary_renderables(summary: dict[str, Any]) -> Any:
    from rich.console import Group

    from hub.demo.view import summary_table, totals_panel

    return Group(summary_table(summary), totals_panel(summary))


def local_urls_table(settings: Settings) -> Any:
    from hub.demo.view import urls_table
    from hub.stack.probes import urls

    return urls_table(urls(settings))


def _check_totals(summary: dict[str, Any], out: Console) -> bool:
    """The counts must add up; say so loudly when they do not."""
    produced, s = summary["events_produced"], summary["scenario"]
    ok = summary["rows_read"] == produced + summary["rejected_by_connector"] and produced == (
        summary["events_stored"] + summary["duplicates_dropped"] + summary["dlq"]
    )
    ok = ok and s["events_sent"] == s["events_stored"] + s["duplicates_dropped"] + s["dlq"]
    if not ok:
        out.print("[bold red]counts do not add up[/]: " + json.dumps(summary)[:500])
    return ok


def _wait_for_ctrl_c() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM; the caller then stops what the demo started.

    Handlers are installed explicitly: a process started in the background by a script
    inherits SIGINT as ignored, and SIGTERM would otherwise end it without cleaning up.
    """
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
