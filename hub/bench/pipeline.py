"""Driving the real pipeline in a benchmark: fill a topic, watch fusion's committed counters,
empty the store between drains.

Fusion's progress is read from ``fusion_stats``, which it commits in the same transaction as
the events, so what a benchmark sees is what is stored. ``hub bench ingest`` and
``hub bench fusion`` both drive fusion this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.progress import Progress

from hub.bench.env import FusionProcess
from hub.bus.kafka import producer
from hub.bus.producer import CachedPartitioner
from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import FusionCounters, read_fusion_counters

POLL_S = 0.05  # how often fusion_stats is read: the resolution of the drain window
STALL_S = 60.0  # no progress for this long: fusion is stuck, give up
# Fusion's tables: emptied between drains, so each drain starts from the same empty store.
FUSION_TABLES = (
    "incident_timeline, incident_alias, incident_report, incident, risk_cell, picture_clock,"
    " sensor_state, resource_balance, event_ref, pending_cancel, picture_change, cap_alert,"
    " event, community_stats, fusion_stats, consumer_offset"
)
# After the truncate (RESTART IDENTITY starts the update sequences again): the change log's
# marks go back to the start with them.
RESET_MARKS = "UPDATE picture_change_mark SET seq = 0"


def empty_fusion_tables(conn: Any) -> None:
    """Everything fusion wrote, gone (no fusion process may be running)."""
    conn.execute(f"TRUNCATE {FUSION_TABLES} RESTART IDENTITY")
    conn.execute(RESET_MARKS)
    conn.execute("DELETE FROM grid_cell WHERE source = 'h3'")  # fusion makes these too


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    consumed: int


class Store:
    """One autocommit connection to the bench database: counters and per-phase queries."""

    def __init__(self, settings: Settings) -> None:
        self.conn = connect(settings, autocommit=True)
        self.group = settings.consumer_group

    def counters(self) -> FusionCounters:
        return read_fusion_counters(self.conn, self.group)

    def one(self, query: str, *params: Any) -> tuple[Any, ...]:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None  # aggregates always answer one row
        return tuple(row)

    def empty(self) -> None:
        """Everything fusion wrote, gone (no fusion process may be running)."""
        empty_fusion_tables(self.conn)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Run:
    """What the phases share."""

    settings: Settings
    store: Store
    progress: Progress
    seed: int
    tag: str
    fusion: FusionProcess | None = None

    def connector(self, phase: str) -> str:
        """``source.connector`` of a phase's events: tells them apart in the store."""
        return f"bench-{phase}-{self.tag}"

    def use(self, settings: Settings) -> None:
        """Drive another topic and consumer group (one per drain) on the same database."""
        self.settings = settings
        self.store.group = settings.consumer_group

    def check_fusion(self) -> None:
        if self.fusion is not None:
            self.fusion.check()

    def wait_consumed(
        self, goal: int, on_sample: Callable[[FusionCounters], None] | None = None
    ) -> tuple[Sample | None, Sample]:
        """Poll until fusion has consumed ``goal`` messages in total.

        Returns the first sample that saw anything consumed beyond the starting count (None
        when the goal was met by the first look) and the sample that saw the goal reached.
        """
        start = self.store.counters().consumed
        first: Sample | None = None
        last_progress, last_seen = time.monotonic(), start
        while True:
            now, counters = time.monotonic(), self.store.counters()
            if on_sample is not None:
                on_sample(counters)
            if counters.consumed >= goal:
                return first, Sample(now, counters.consumed)
            if first is None and counters.consumed > start:
                first = Sample(now, counters.consumed)
            if counters.consumed > last_seen:
                last_progress, last_seen = now, counters.consumed
            elif now - last_progress > STALL_S:
                raise TimeoutError(f"fusion made no progress for {STALL_S:.0f} s at {last_seen:,}")
            self.check_fusion()
            time.sleep(POLL_S)


def fill_topic(run: Run, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce the pre-fill (from this process: fusion is not running yet); returns seconds."""
    task = run.progress.add_task("pre-fill topic", total=len(messages), info="")
    p = producer(run.settings, partitioner=CachedPartitioner())
    errors: list[BaseException] = []
    began = time.monotonic()
    for i, (key, value) in enumerate(messages, 1):
        p.send(run.settings.events_topic, value=value, key=key).add_errback(errors.append)
        if i % 10_000 == 0:
            run.progress.update(task, completed=i)
    p.flush()
    p.close()
    run.progress.update(task, completed=len(messages))
    if errors:
        raise RuntimeError(f"{len(errors)} pre-fill messages not acknowledged: {errors[0]!r}")
    return time.monotonic() - began
