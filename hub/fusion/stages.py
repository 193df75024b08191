"""The stages fusion runs inside a batch's transaction, after the batch's events are stored.

Each stage reads what the batch added (the temporary table ``fusion_new``: the ids of the events
this batch really inserted) and writes its part of the picture in the same transaction, so the
events, every stage's state and the consumer offsets commit together (a crash or a replay
changes nothing). Stages run in order and share a ``Batch``:

1. thresholds: observations checked against their thresholds; a crossing stores a derived
   alert event (and notes its id in ``fusion_new``), which then takes part in correlation;
2. incidents: reports joined into incidents (``hub.fusion.incident.stage``); notes the incidents it
   changed;
3. warning flags: incidents with an alert are warnings, flagged to the communities near them;
4. risk: the risk of the grid cells those incidents touch, and of cells whose risk decays;
5. resources: per-community stock and needs.

A stage may also ``plan``: read the store before the batch's events are inserted, and leave
work on the frame that needs no database to run while PostgreSQL inserts them (the incident
stage's correlation: the insert and the Python work then share the two cores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import polars as pl
import psycopg


@dataclass
class Batch:
    """What the stages of one batch tell each other."""

    # The rows of the decoded batch that were inserted (``hub.fusion.decode`` columns plus
    # community and grid cell; the sink leaves out those stored before) and how many were
    # inserted: when the two agree, a stage may read the batch from the frame instead of the
    # store. None for callers that only name the rows in fusion_new, and after a stage added
    # events of its own (``added_events``).
    frame: pl.DataFrame | None = None
    stored: int = 0
    changed_incidents: set[str] = field(default_factory=set)  # ids of rows rebuilt or closed
    # (status, grid cell) of the reports the batch cancelled: cells that may have lost an
    # incident (a changed incident's row names only the cells of its live members).
    vacated_cells: set[tuple[str, str]] = field(default_factory=set)
    # What each stage's plan computed beside the insert (``Planning.plan``), by stage name.
    plans: dict[str, object] = field(default_factory=dict)

    def added_events(self) -> None:
        """A stage stored events of its own and noted them in fusion_new (derived alerts): the
        frame is no longer all of the batch, so the stages after it read the store."""
        self.frame = None

    def lacks(self, kinds: Iterable[str], types: Iterable[str] | None = None) -> bool:
        """Whether the batch certainly holds no event of ``kinds`` (and, when given, of
        ``types``): its frame is known and has none. A stage then skips its query of the
        store; a batch that some stage added events to is never known to lack anything."""
        if self.frame is None or "kind" not in self.frame.columns:
            return False
        rows = self.frame["kind"].is_in(list(kinds))
        if types is not None:
            rows &= self.frame["event_type"].is_in(list(types))
        return not rows.any()

    @property
    def all_new(self) -> bool:
        """Every row of the frame was inserted (it holds no duplicate of a stored event)."""
        return self.frame is not None and self.stored == self.frame.height


class Stage(Protocol):
    name: str

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Once per connection (temporary tables and the like), outside any batch."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> object:
        """Inside the batch's transaction (what it returns is for its own tests)."""


@runtime_checkable
class Committing(Protocol):
    """A stage that keeps state beside the store (a cache): told when its batch ends."""

    def before_commit(self, conn: psycopg.Connection[Any]) -> None:
        """Inside the batch's transaction, after every stage applied."""

    def after_commit(self, committed: bool) -> None:
        """The batch's transaction committed, or rolled back (``committed`` False)."""


@runtime_checkable
class Planning(Protocol):
    """A stage that can start before the batch's events are stored."""

    name: str

    def plan(self, frame: pl.DataFrame) -> Callable[[psycopg.Connection[Any]], object] | None:
        """The work this stage can do before the batch's events are stored, or None. The sink
        runs it on a thread of its own while PostgreSQL inserts the events, after the
        sequence lock was taken (so its reads see every batch committed before this one),
        with a connection of its own (autocommit: reads only); the result goes to
        ``Batch.plans``."""
