"""The stages fusion runs inside a batch's transaction, after the batch's events are stored.

Each stage reads what the batch added (the temporary table ``fusion_new``: the ids of the events
this batch really inserted) and writes its part of the picture in the same transaction, so the
events, every stage's state and the consumer offsets commit together (a crash or a replay
changes nothing). Stages run in order and share a ``Batch``:

1. thresholds: observations checked against their thresholds; a crossing stores a derived
   alert event (and notes its id in ``fusion_new``), which then takes part in correlation;
2. incidents: reports joined into incidents (``hub.fusion.incidents``); notes the incidents it
   changed;
3. risk: the risk of the grid cells those incidents touch, and of cells whose risk decays;
4. resources: per-community stock and needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg


@dataclass
class Batch:
    """What the stages of one batch tell each other."""

    changed_incidents: set[uuid.UUID] = field(default_factory=set)  # rows rebuilt or closed


class Stage(Protocol):
    name: str

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Once per connection (temporary tables and the like), outside any batch."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> object:
        """Inside the batch's transaction (what it returns is for its own tests)."""
