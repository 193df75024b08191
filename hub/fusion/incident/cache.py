"""The neighbourhoods fusion partitioned lately, kept in memory from one batch to the next.

A storm repeats reports at the places of earlier ones, so each batch partitions again thousands
of stored neighbourhoods, and reading their members back from PostgreSQL (the event and its
``incident_report`` row, at random places on disk) took longer than the partition itself. The
incident stage keeps what it wrote instead: when a batch COMMITS, the live members of every
neighbourhood it partitioned (as the store would give them back: ``prior`` = their incident,
``neighbourhood`` = their neighbourhood) replace what the cache held of those neighbourhoods,
and a later batch takes the neighbourhoods it finds here and reads only the others.

The cache is right only while nothing else writes the incidents. Every writer of incident rows
draws ``incident_update_seq`` (fusion's stages, ``hub fusion recluster``, another worker), so
the cache notes the sequence's position at its own commit and is emptied when a batch finds it
elsewhere; a batch that rolls back empties it too. It holds whole neighbourhoods only, at most
``max_rows`` reports: past that, those least recently written go (they are read again when a
batch needs them). A new process starts empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import psycopg

_USED = "used"  # the batch count at which a row was written: whole neighbourhoods share it

_POSITION = "SELECT last_value, is_called FROM incident_update_seq"


class NeighbourhoodCache:
    """Live members of recently partitioned neighbourhoods, as report frames (one writer)."""

    def __init__(self, empty: pl.DataFrame, max_rows: int = 400_000) -> None:
        self.max_rows = max_rows
        self._empty = empty  # the stored report frame's schema
        self._frame = empty.with_columns(pl.lit(0, pl.Int64).alias(_USED))
        self._position: tuple[int, bool] | None = None  # incident_update_seq at our commit
        self._position_at_commit: tuple[int, bool] | None = None
        self._pending: tuple[set[str], pl.DataFrame] | None = None
        self._batches = 0
        self.hits = 0  # neighbourhoods taken from here, and read from the store (for the logs)
        self.misses = 0

    @property
    def rows(self) -> int:
        return self._frame.height

    def figures(self) -> dict[str, int]:
        """For the logs: rows held, neighbourhoods taken from here and read from the store."""
        return {
            "cache_rows": self._frame.height,
            "cache_hits": self.hits,
            "cache_misses": self.misses,
        }

    def check(self, conn: psycopg.Connection[Any]) -> None:
        """Empty the cache unless the incidents were last written by its own commit. Call at the
        start of a batch, holding fusion's sequence lock (no writer can come in between)."""
        if self._frame.height and _position(conn) != self._position:
            self.clear()

    def take(self, ids: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
        """Every cached member of the neighbourhoods ``ids``, and the ids not cached."""
        if not ids or self._frame.height == 0:
            self.misses += len(ids)
            return self._empty, list(ids)
        hit = self._frame.filter(pl.col("neighbourhood").is_in(list(ids))).drop(_USED)
        cached = set(hit["neighbourhood"].unique().to_list())
        missing = [i for i in ids if i not in cached]
        self.hits += len(cached)
        self.misses += len(missing)
        return hit, missing

    def stage(self, replaced: Iterable[str], members: pl.DataFrame) -> None:
        """What this batch writes, kept once it commits: the neighbourhoods ``replaced`` go,
        ``members`` (every live member of the neighbourhoods it partitioned, with their new
        incident and neighbourhood) come in. Several calls in one batch add up."""
        gone, frame = self._pending or (set(), self._empty)
        these = set(replaced) | set(members["neighbourhood"].drop_nulls().to_list())
        fresh = members.select(self._empty.columns)
        frame = pl.concat([frame.filter(~pl.col("neighbourhood").is_in(list(these))), fresh])
        self._pending = gone | these, frame

    def before_commit(self, conn: psycopg.Connection[Any]) -> None:
        """Inside the batch's transaction, after every stage: where the sequence stands."""
        if self._pending is not None:
            self._position_at_commit = _position(conn)

    def after_commit(self, committed: bool) -> None:
        """The batch's transaction ended: what it staged is kept, or everything goes."""
        pending, self._pending = self._pending, None
        if not committed:
            self.clear()
            return
        if pending is None:
            return
        gone, frame = pending
        self._batches += 1
        kept = self._frame.filter(~pl.col("neighbourhood").is_in(list(gone)))
        fresh = frame.with_columns(pl.lit(self._batches, pl.Int64).alias(_USED))
        self._frame = _bounded(pl.concat([kept, fresh]), self.max_rows)
        self._position = self._position_at_commit

    def clear(self) -> None:
        self._frame = self._frame.clear()
        self._position = None


def _position(conn: psycopg.Connection[Any]) -> tuple[int, bool] | None:
    row = conn.execute(_POSITION).fetchone()
    return (int(row[0]), bool(row[1])) if row else None


def _bounded(frame: pl.DataFrame, max_rows: int) -> pl.DataFrame:
    """At most ``max_rows`` rows: the neighbourhoods written longest ago go first (whole: all
    rows of one neighbourhood were written by one batch)."""
    if frame.height <= max_rows:
        return frame
    per_batch = frame.group_by(_USED).len().sort(_USED, descending=True)
    kept = per_batch.filter(pl.col("len").cum_sum() <= max_rows)
    if kept.height == 0:
        return frame.clear()
    oldest: int = kept[_USED][-1]  # newest first
    return frame.filter(pl.col(_USED) >= oldest)
