"""The PostgreSQL side of fusion: one transaction per batch holds the events, the community
stats, the counters, the H3 cells first named by the batch, the incidents AND the consumer
offsets, so a crash at any point changes nothing.

Rows travel as CSV written by polars (no per-row Python work) into a temporary staging table
through COPY, then ``INSERT ... ON CONFLICT (event_id) DO NOTHING``: the unique constraint is
the second wall against duplicates.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl
import psycopg

from geo.grids import H3_PREFIX
from hub.fusion.stages import Batch, Committing, Planning, Stage
from hub.store.grids import ensure_h3_cells

log = logging.getLogger(__name__)

STAGE_COLUMNS = [
    "event_id",
    "community_id",
    "kind",
    "category",
    "severity",
    "urgency",
    "certainty",
    "status",
    "event_type",
    "observed_at",
    "source_system",
    "source_connector",
    "reporter",
    "properties",
    "refs",
    "sent_ms",
    "partition",
    "offset",
    "geom_wkb",
    "grid_cell",
]

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS fusion_stage (
    idx bigint, event_id uuid, community_id text, kind text, category text, severity text,
    urgency text, certainty text, status text, event_type text, observed_at timestamptz,
    source_system text, source_connector text, reporter text, properties jsonb, refs uuid[],
    sent_ms bigint, partition int, "offset" bigint, geom_wkb geometry, grid_cell text
) ON COMMIT DELETE ROWS;
"""
# The ids of the events a batch really inserted, for the stages (``hub.fusion.stages``).
CREATE_NEW = "CREATE TEMP TABLE IF NOT EXISTS fusion_new (event_id uuid) ON COMMIT DELETE ROWS"
_CREATE_STAGE += CREATE_NEW

_COPY = (
    "COPY fusion_stage (idx, "
    + ", ".join(f'"{c}"' for c in STAGE_COLUMNS)
    + ") FROM STDIN (FORMAT csv)"
)

_INSERT = """
WITH ins AS (
    INSERT INTO event (event_id, community_id, kind, category, severity, urgency, certainty,
        status, event_type, observed_at, geom, source_system, source_connector, reporter,
        properties, refs, sent_at, kafka_partition, kafka_offset, grid_cell)
    SELECT event_id, community_id, kind, category, severity, urgency, certainty, status,
        event_type, observed_at, ST_SetSRID(geom_wkb, 4326), source_system, source_connector,
        reporter, properties, refs, to_timestamp(sent_ms / 1000.0), partition, "offset",
        grid_cell
    FROM fusion_stage ORDER BY partition, "offset"
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, community_id, observed_at, ingested_at, refs
){noted}, referred AS (  -- which event refs which (fusion's out-of-order lookup)
    INSERT INTO event_ref (ref, event_id)
    SELECT DISTINCT unnest(refs), event_id FROM ins WHERE refs <> '{{}}'
    ON CONFLICT DO NOTHING
), agg AS (
    SELECT community_id, count(*) AS n, max(ingested_at) AS last_event_at,
           max(observed_at) AS last_observed_at
    FROM ins GROUP BY community_id
), stats AS (
    INSERT INTO community_stats AS cs (community_id, events_stored, last_event_at, last_observed_at)
    SELECT community_id, n, last_event_at, last_observed_at FROM agg
    ON CONFLICT (community_id) DO UPDATE SET
        events_stored = cs.events_stored + EXCLUDED.events_stored,
        last_event_at = GREATEST(cs.last_event_at, EXCLUDED.last_event_at),
        last_observed_at = GREATEST(cs.last_observed_at, EXCLUDED.last_observed_at)
)
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM agg){duplicates}
"""
# The batch's rows that were not inserted (stored before): the stages then know the batch's
# rows without asking the store again (only when there are stages: a hot path).
_DUPLICATES = """,
    ARRAY(SELECT s.event_id::text FROM fusion_stage s
          WHERE s.event_id NOT IN (SELECT event_id FROM ins))"""
# What the batch really added, for the stages (only when there are some: a hot path).
_NOTE_NEW = """, noted AS (
    INSERT INTO fusion_new (event_id) SELECT event_id FROM ins
)"""

MAX_KNOWN_H3_CELLS = 500_000  # ~50 MB of ids; a city at resolution 9 has a few thousand

EVENT_SEQ_LOCK = 0x4855_4253_4551  # "HUBSEQ": serialises event inserts from commit to commit

_OFFSETS = """
INSERT INTO consumer_offset (group_id, topic, partition, next_offset, topic_id, updated_at)
VALUES (%s, %s, %s, %s, %s, now())
ON CONFLICT (group_id, topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset, topic_id = EXCLUDED.topic_id, updated_at = now()
"""

_STATS = """
INSERT INTO fusion_stats AS f (group_id, consumed, stored, duplicates, dlq, updated_at)
VALUES (%s, %s, %s, %s, %s, now())
ON CONFLICT (group_id) DO UPDATE SET consumed = f.consumed + EXCLUDED.consumed,
    stored = f.stored + EXCLUDED.stored, duplicates = f.duplicates + EXCLUDED.duplicates,
    dlq = f.dlq + EXCLUDED.dlq, updated_at = now()
"""


@dataclass(frozen=True)
class StoredOffset:
    next_offset: int
    topic_id: str | None


@dataclass(frozen=True)
class BatchCounts:
    consumed: int
    duplicates_in_batch: int
    dlq: int


def to_csv(frame: pl.DataFrame) -> bytes:
    if "grid_cell" not in frame.columns:  # a frame that skipped grid assignment (bench prefill)
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("grid_cell"))
    buf = io.BytesIO()
    frame.select(["idx", *STAGE_COLUMNS]).write_csv(buf, include_header=False)
    return buf.getvalue()


class PostgresSink:
    """Writes batches on an autocommit connection (not thread-safe: one sink per writer)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        group_id: str,
        topic: str,
        stages: Sequence[Stage] = (),
        reader: psycopg.Connection | None = None,
    ) -> None:
        self.conn = conn
        # Autocommit, for the stages' plans to read while ``conn`` inserts (None: they read on
        # ``conn`` before the insert).
        self.reader = reader
        self.group_id = group_id
        self.topic = topic
        self.stages = tuple(stages)  # none: events only (benchmarks that pre-fill a store)
        # Of the last batch, for the metrics: the insert, each stage, the offsets and commit.
        self.step_seconds: dict[str, float] = {}
        self._planning = [s for s in self.stages if isinstance(s, Planning)]
        self._committing = [s for s in self.stages if isinstance(s, Committing)]
        # The plans run here while this thread waits for PostgreSQL to insert the events.
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusion-planner")
        self._insert_sql = _INSERT.format(
            noted=_NOTE_NEW if self.stages else "",
            duplicates=_DUPLICATES if self.stages else ", NULL::text[]",
        )
        # H3 cells known to be stored: their polygons are not built again for every batch.
        # Filled after commit only, so a rolled-back batch leaves nothing believed stored.
        self._h3_stored: set[str] = set()
        with conn.transaction():
            conn.execute(_CREATE_STAGE)
            for stage in self.stages:
                stage.prepare(conn)

    def close(self) -> None:
        """Stop the planner thread (the connections are the caller's)."""
        self._planner.shutdown(wait=False)

    def load_offsets(self) -> dict[int, StoredOffset]:
        rows = self.conn.execute(
            "SELECT partition, next_offset, topic_id FROM consumer_offset"
            " WHERE group_id = %s AND topic = %s",
            (self.group_id, self.topic),
        ).fetchall()
        return {p: StoredOffset(o, t) for p, o, t in rows}

    def write(
        self,
        frame: pl.DataFrame,
        offsets: Mapping[int, int],
        topic_id: str | None,
        counts: BatchCounts,
    ) -> int:
        """Store the batch with its offsets and counters in one transaction; returns rows stored."""
        new_cells = self._new_h3_cells(frame)
        steps = self.step_seconds = {}
        clock = time.perf_counter()

        def step(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            steps[name] = now - clock
            clock = now

        try:
            stored = self._transaction(frame, offsets, topic_id, counts, new_cells, step)
        except BaseException:
            for stage in self._committing:
                stage.after_commit(False)
            raise
        for stage in self._committing:
            stage.after_commit(True)
        step("commit")
        if len(self._h3_stored) + len(new_cells) > MAX_KNOWN_H3_CELLS:
            self._h3_stored.clear()  # bounded memory; ON CONFLICT keeps re-inserts harmless
        self._h3_stored.update(new_cells)
        return stored

    def _transaction(
        self,
        frame: pl.DataFrame,
        offsets: Mapping[int, int],
        topic_id: str | None,
        counts: BatchCounts,
        new_cells: list[str],
        step: Callable[[str], None],
    ) -> int:
        """``write``'s transaction: the events, the stages, the offsets and counters."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            stored, duplicates, plans = (
                self._insert(cur, frame, self._planning) if frame.height else (0, [], {})
            )
            step("insert")
            # After _insert took the sequence lock: two workers naming the same new cell then
            # queue on that lock instead of deadlocking on each other's uncommitted cell rows.
            ensure_h3_cells(self.conn, new_cells)
            if stored:
                inserted = frame.filter(~pl.col("event_id").is_in(duplicates))
                batch = Batch(frame=inserted, stored=stored, plans=plans)
                for stage in self.stages:
                    stage.apply(self.conn, batch)
                    step(stage.name)
            cur.executemany(
                _OFFSETS,
                [(self.group_id, self.topic, p, o, topic_id) for p, o in offsets.items()],
            )
            repeated = counts.duplicates_in_batch + frame.height - stored
            cur.execute(_STATS, (self.group_id, counts.consumed, stored, repeated, counts.dlq))
            for stage in self._committing:
                stage.before_commit(self.conn)
        return stored

    def _new_h3_cells(self, frame: pl.DataFrame) -> list[str]:
        if "grid_cell" not in frame.columns:
            return []
        cells = frame["grid_cell"].drop_nulls().unique()
        h3_cells = cells.filter(cells.str.starts_with(H3_PREFIX)).to_list()
        return [c for c in h3_cells if c not in self._h3_stored]

    def _insert(
        self, cur: psycopg.Cursor, frame: pl.DataFrame, planning: Sequence[Planning] = ()
    ) -> tuple[int, list[str], dict[str, object]]:
        """Insert the batch's events; returns how many were new, the ids of the rows that were
        not (stored before; only with stages), and the results of the stages' plans, computed
        on the planner thread while PostgreSQL inserts."""
        with cur.copy(_COPY) as copy:
            copy.write(to_csv(frame))
        # Held to commit: with several fusion workers, ``seq`` values then become visible in
        # order, so a reader paging by ``seq`` never skips a row that commits late. The plans
        # read the store after it too: they see every batch committed before this one.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_SEQ_LOCK,))
        jobs = {s.name: job for s in planning if (job := s.plan(frame)) is not None}
        if self.reader is None:  # one connection: the plans run first
            plans = {name: job(self.conn) for name, job in jobs.items()}
            row = cur.execute(self._insert_sql).fetchone()
        else:
            reader = self.reader
            running = {name: self._planner.submit(job, reader) for name, job in jobs.items()}
            row = cur.execute(self._insert_sql).fetchone()
            plans = {name: future.result() for name, future in running.items()}
        if row is None:
            return 0, [], plans
        return int(row[0]), list(row[1] or ()), plans

    def find_unstorable(self, frame: pl.DataFrame) -> dict[int, str]:
        """Rows PostgreSQL refuses (bad geometry, vanished community...): {idx: error}.

        A dry run, one savepoint per row, rolled back at the end; only used after a batch
        failed, so that one poison row cannot stop the stream.
        """
        bad: dict[int, str] = {}
        try:
            with self.conn.transaction(force_rollback=True), self.conn.cursor() as cur:
                for row in frame.iter_slices(1):
                    try:
                        with self.conn.transaction():
                            self._insert(cur, row)  # no plans: nothing of it is kept
                    except psycopg.Error as exc:
                        bad[int(row["idx"][0])] = str(exc).splitlines()[0][:300]
        finally:
            self.conn.rollback()
        return bad


def partition_next_offsets(partitions: Iterable[int], offsets: Iterable[int]) -> dict[int, int]:
    """Next offset to read per partition (highest consumed + 1)."""
    nxt: dict[int, int] = {}
    for p, o in zip(partitions, offsets, strict=True):
        if o + 1 > nxt.get(p, -1):
            nxt[p] = o + 1
    return nxt
