"""Fusion's cumulative counters, as readers (demo, benchmark, tests) see them.

Fusion writes them in each batch's transaction (``hub.fusion.sink``), so they are exact across
crashes; a reader takes the difference of two readings to see what happened in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class FusionCounters:
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dlq: int = 0

    def __sub__(self, other: FusionCounters) -> FusionCounters:
        return FusionCounters(
            self.consumed - other.consumed,
            self.stored - other.stored,
            self.duplicates - other.duplicates,
            self.dlq - other.dlq,
        )


def read_fusion_counters(conn: psycopg.Connection[Any], group_id: str) -> FusionCounters:
    """The counters of one consumer group (all zero before its first batch)."""
    row = conn.execute(
        "SELECT consumed, stored, duplicates, dlq FROM fusion_stats WHERE group_id = %s",
        (group_id,),
    ).fetchone()
    return FusionCounters(*row) if row else FusionCounters()


_ORPHANS = """
SELECT count(*) FILTER (WHERE e.event_id IS NULL), count(*) FILTER (WHERE i.id IS NULL)
FROM incident_report r
LEFT JOIN event e ON e.event_id = r.event_id
LEFT JOIN incident i ON i.id = r.incident_id
"""


def orphan_reports(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Incident members without their event, and without their incident: both must be 0
    (fusion keeps the references without foreign keys, migration 0007_report_keys)."""
    row = conn.execute(_ORPHANS).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
