"""The demo replay: communities in, per-community CSV connectors out, fusion drained."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors import ConnectorReport, ConnectorSettings, load_mapping, run_csv
from hub.demo.counters import community_counts, fusion_counters, lag_percentiles
from hub.demo.feeds import Feed, slug, split_by_community
from hub.settings import Settings
from hub.store.communities import import_communities
from hub.store.db import connect
from hub.store.stats import FusionCounters

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sf"
INCIDENTS = DATA / "sfpd_incident_reports_2018-12.csv"
NEIGHBOURHOODS = DATA / "sf_analysis_neighborhoods.geojson"
MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents.toml"
CONNECTOR_THREADS = 4


@dataclass
class Progress:
    """Live figures shared between the connector threads and the view."""

    feeds: int = 0
    feeds_done: int = 0
    rows_total: int = 0
    rows_read: dict[str, int] = field(default_factory=dict)
    reports: list[ConnectorReport] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, feed: str, rows: int) -> None:
        with self.lock:
            self.rows_read[feed] = rows

    def finished(self, report: ConnectorReport) -> None:
        with self.lock:
            self.reports.append(report)
            self.feeds_done += 1

    @property
    def total_read(self) -> int:
        return sum(self.rows_read.values())

    @property
    def produced(self) -> int:
        return sum(r.events_produced for r in self.reports)


def import_sf_communities(settings: Settings) -> int:
    with connect(settings) as conn:
        report = import_communities(conn, NEIGHBOURHOODS, "nhood", "nhood")
    return len(report.inserted) + len(report.updated)


def connector_settings(settings: Settings) -> ConnectorSettings:
    """The demo's connectors send to the hub's broker and topic, keyed at the hub's zoom (the
    reporter key, which the SFPD mapping does not use, from the environment)."""
    return ConnectorSettings(
        kafka_bootstrap=settings.kafka_bootstrap,
        events_topic=settings.events_topic,
        tile_zoom=settings.tile_zoom,
        state_dir=settings.state_dir,
    )


def _run_feed(
    feed: Feed, settings: ConnectorSettings, work_dir: Path, progress: Progress
) -> ConnectorReport:
    name = slug(feed.community)
    report = run_csv(
        feed.path,
        load_mapping(MAPPING),
        settings,
        rejects_path=work_dir / "rejects" / f"{name}.csv",
        outbox_path=work_dir / "outbox" / f"{name}.sqlite",
        on_progress=lambda rows: progress.read(name, rows),
        chunk_rows=250,  # small chunks: the live view moves, and events leave sooner
    )
    progress.read(name, report.rows_read)
    progress.finished(report)
    return report


def replay(settings: Settings, work_dir: Path, progress: Progress) -> list[ConnectorReport]:
    """Run one connector per community feed (a few at a time); returns their reports."""
    feeds = split_by_community(INCIDENTS, "Analysis Neighborhood", work_dir / "feeds")
    progress.feeds, progress.rows_total = len(feeds), sum(f.rows for f in feeds)
    connectors = connector_settings(settings)
    with ThreadPoolExecutor(CONNECTOR_THREADS, thread_name_prefix="connector") as pool:
        futures = [pool.submit(_run_feed, f, connectors, work_dir, progress) for f in feeds]
        return [f.result() for f in futures]


def wait_drained(
    settings: Settings,
    before: FusionCounters,
    produced: int,
    timeout_s: float = 300,
    tick: Callable[[], None] | None = None,
) -> FusionCounters:
    """Wait until fusion has consumed everything this run produced; returns the deltas."""
    deadline = time.monotonic() + timeout_s
    while True:
        delta = fusion_counters(settings) - before
        if delta.consumed >= produced:
            return delta
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"fusion consumed {delta.consumed} of {produced} within {timeout_s}s"
            )
        if tick:
            tick()
        time.sleep(0.2)


def summarise(
    settings: Settings,
    reports: list[ConnectorReport],
    delta: FusionCounters,
    per_community_before: dict[str, int],
    started_at: datetime,
) -> dict[str, Any]:
    after = community_counts(settings)
    per_community = {
        cid: n - per_community_before.get(cid, 0)
        for cid, n in sorted(after.items())
        if n - per_community_before.get(cid, 0)
    }
    return {
        "rows_read": sum(r.rows_read for r in reports),
        "rejected_by_connector": sum(r.rejected for r in reports),
        "events_produced": sum(r.events_produced for r in reports),
        "events_stored": delta.stored,
        "duplicates_dropped": delta.duplicates,
        "dlq": delta.dlq,
        "per_community": per_community,
        "lag_ms": lag_percentiles(settings, started_at, "sfpd-incidents"),
        "reject_reasons": dict(sum((r.reasons for r in reports), start=Counter[str]())),
        "connectors": len(reports),
        "finished_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
