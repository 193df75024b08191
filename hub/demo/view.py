"""What the demo shows: a live panel while replaying, then the summary and the URLs."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.markup import escape as esc
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hub.store.stats import FusionCounters


def consumer_lag(metrics_url: str | None) -> int | None:
    """Messages behind the log end, from the fusion worker's own Prometheus endpoint."""
    if not metrics_url:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "hub_fusion_consumer_lag":
            return int(sum(s.value for s in family.samples))
    return None


class LiveView:
    """Rows read (bar), then a table of what fusion did, refreshed by ``render``."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]replaying[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
        )
        self.task = self.bar.add_task("rows", total=None)  # known once the feeds are split
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self._rate = 0.0

    def render(self, rows_read: int, feeds: str, delta: FusionCounters, lag: int | None) -> Group:
        self.bar.update(self.task, completed=rows_read)
        now, stored = time.monotonic(), delta.stored + delta.duplicates + delta.dlq
        then, before = self._last
        if now - then >= 0.5:
            self._rate, self._last = (stored - before) / (now - then), (now, stored)
        table = Table(show_header=True, header_style="bold", expand=False)
        for col in ("connectors", "events stored", "events/s", "duplicates", "DLQ", "lag (msgs)"):
            table.add_column(col, justify="right")
        table.add_row(
            feeds,
            f"{delta.stored:,}",
            f"{self._rate:,.0f}",
            f"{delta.duplicates:,}",
            f"{delta.dlq:,}",
            "-" if lag is None else f"{lag:,}",
        )
        return Group(self.bar, table)


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Events stored per community (this run)", header_style="bold")
    table.add_column("community")
    table.add_column("events", justify="right")
    for cid, n in sorted(summary["per_community"].items(), key=lambda kv: -kv[1]):
        table.add_row(cid, f"{n:,}")
    return table


def totals_panel(summary: dict[str, Any]) -> Panel:
    lag = summary["lag_ms"]
    lines = [
        f"rows read              {summary['rows_read']:>8,}",
        f"rejected by connector  {summary['rejected_by_connector']:>8,}  "
        + ", ".join(f"{k}: {v}" for k, v in summary["reject_reasons"].items()),
        f"events produced        {summary['events_produced']:>8,}",
        f"events stored          {summary['events_stored']:>8,}",
        f"duplicates dropped     {summary['duplicates_dropped']:>8,}",
        f"dead letters (DLQ)     {summary['dlq']:>8,}",
        f"lag send->commit (ms)  p50 {lag['p50']}  p95 {lag['p95']}  p99 {lag['p99']}",
    ]
    return Panel("\n".join(lines), title="SF replay", expand=False)


def urls_table(urls: dict[str, str]) -> Table:
    table = Table(title="Open these", header_style="bold")
    table.add_column("what")
    table.add_column("URL")
    for name, url in urls.items():
        table.add_row(name, url)
    return table


def clients_table(rows: list[dict[str, Any]]) -> Table:
    """Who sees what, counted through the API, as each principal."""
    table = Table(title="One client per principal (secrets shown once)", title_justify="left")
    table.add_column("principal")
    table.add_column("client_id")
    table.add_column("events it sees", justify="right")
    table.add_column("with reporter", justify="right")
    for r in rows:
        table.add_row(r["label"], r["client_id"], f"{r['events']:,}", f"{r['with_reporter']:,}")
    return table


# --- the fused picture and the scenario ----------------------------------------------------

LEVEL_STYLE = {
    "blue": "bold blue",
    "yellow": "bold yellow",
    "orange": "bold dark_orange",
    "red": "bold red",
}


def incidents_table(counts: dict[str, Any]) -> Table:
    """Incidents by verification (rows) and state (columns)."""
    table = Table(title="Incidents (the fused picture)", title_justify="left", header_style="bold")
    table.add_column("verification")
    for state in ("open", "closed", "total"):
        table.add_column(state, justify="right")
    for verification, states in counts["by_verification_and_state"].items():
        total = counts["by_verification"][verification]
        table.add_row(verification, *(f"{n:,}" for n in (*states.values(), total)))
    table.add_row(
        "all", *(f"{n:,}" for n in (*counts["by_state"].values(), counts["total"])), style="bold"
    )
    return table


def risk_table(levels: dict[str, int]) -> Table:
    """Grid cells per risk colour, each in its colour."""
    table = Table(title="Risk per grid cell", title_justify="left", header_style="bold")
    for level in levels:
        table.add_column(level, justify="right", header_style=LEVEL_STYLE.get(level, "bold"))
    table.add_row(*(Text(f"{n:,}", style=LEVEL_STYLE.get(lv, "")) for lv, n in levels.items()))
    return table


def warnings_table(warnings: dict[str, Any]) -> Table:
    """Open warnings with the neighbouring communities each is flagged to."""
    table = Table(
        title=f"Warnings ({warnings['count']})", title_justify="left", header_style="bold"
    )
    for col in ("incident", "type", "level", "in", "flagged to"):
        table.add_column(col, overflow="fold")
    for w in warnings["items"]:
        level = w["level"] or "-"
        table.add_row(
            *(Text(t) for t in (w["id"], w["event_type"])),
            Text(level, style=LEVEL_STYLE.get(level, "")),
            *(Text(", ".join(names)) for names in (w["communities"], w["neighbours"])),
        )
    return table


def scenario_panel(s: dict[str, Any], flood_url: str, rumour_url: str) -> Panel:
    """What the scripted scenario did and what the hub made of it."""
    lines = [
        "[dim]synthetic: the gauge readings, the residents and the rumour; the places are real[/]",
        *_flood_lines(s, flood_url),
        *_rumour_lines(s, rumour_url),
        f"events sent {s['events_sent']}: stored {s['events_stored']}, "
        f"duplicates dropped {s['duplicates_dropped']} (a re-run sends the same ids)",
    ]
    return Panel("\n".join(lines), title="Scenario", expand=False)


def _flood_lines(s: dict[str, Any], url: str) -> list[str]:
    level = s["flood_warning_level"] or "-"
    sees = "sees it flagged to it" if s["flood_flagged_neighbour_sees_it"] else "does NOT see it"
    return [
        f"[bold]Flood[/] along Mission Creek in {esc(' and '.join(s['flood_communities']))}: "
        f"gauges raised a warning at [{LEVEL_STYLE.get(level, 'bold')}]{esc(level)}[/]; the "
        f"incident is [bold]{esc(s['flood_verification'])}[/] across the border",
        f"  flagged to {esc(', '.join(s['flood_warning_neighbours']) or 'nobody')}",
        f"  ({esc(s['flood_flagged_neighbour'])}'s own client {sees})",
        f"  {s['flood_incident']}",
        f"  {url}",
    ]


def _rumour_lines(s: dict[str, Any], url: str) -> list[str]:
    when = "" if s["rumour_refuted_now"] else " (in an earlier run)"
    return [
        f"[bold]Rumour[/] of a gas explosion in {esc(' and '.join(s['rumour_communities']))}: "
        f"[bold]{esc(s['rumour_verification'])}[/]{when}",
        f"  by {esc(s['rumour_decided_by'] or '-')}: {esc(s['department'])}",
        f"  why: {esc(s['rumour_reason'] or '-')}",
        f"  {s['rumour_incident']}",
        f"  {url}",
    ]
