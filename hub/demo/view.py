"""What the demo shows: a live panel while replaying, then the summary and the URLs."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
