"""What the demo reads back from PostgreSQL: fusion counters, per-community stats, lag."""

from __future__ import annotations

from datetime import datetime

from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import FusionCounters, read_fusion_counters


def fusion_counters(settings: Settings) -> FusionCounters:
    with connect(settings) as conn:
        return read_fusion_counters(conn, settings.consumer_group)


def community_counts(settings: Settings) -> dict[str, int]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT c.id, coalesce(s.events_stored, 0) FROM community c"
            " LEFT JOIN community_stats s ON s.community_id = c.id"
        ).fetchall()
    return {cid: int(n) for cid, n in rows}


def lag_percentiles(settings: Settings, since: datetime, system: str) -> dict[str, float | None]:
    """Send (Kafka timestamp) to commit (ingest time) of the events stored since ``since``."""
    with connect(settings) as conn:
        row = conn.execute(
            """
            SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM ingested_at - sent_at) * 1000)
            FROM event WHERE ingested_at >= %s AND source_system = %s AND sent_at IS NOT NULL
            """,
            (since, system),
        ).fetchone()
    values = row[0] if row and row[0] else [None, None, None]
    return {
        k: (round(v, 1) if v is not None else None)
        for k, v in zip(("p50", "p95", "p99"), values, strict=True)
    }
