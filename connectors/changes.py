"""New, changed and unchanged rows of an incremental source, and the event ids they get.

The rules keep "nothing counted twice" while no change is lost:

- a row id the cursor has never sent: ``event_id = uuid5(system/row id)``, the CSV rule, so the
  same row exported as CSV, read from a spreadsheet or polled from a database is one event;
- a row read again with the same mapped cells (a spreadsheet re-read, a tie on the SQL cursor,
  an unmapped column changed): nothing is sent, it counts as ``unchanged``;
- a row whose mapped cells changed: a NEW event, ``event_id = uuid5(previous event id/digest)``
  with ``refs = [previous event id]``: the contract's update (fusion joins it to the report it
  refs, so the incident still counts once). Re-sending the old id instead would be dropped by
  fusion as a duplicate, and the change lost. The id is deterministic: a crash before the
  cursor was saved re-sends the very same event, which fusion drops.

Rejected rows are not recorded: they are reported again on every run until they are fixed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.csv_source import NAMESPACE, Conversion
from connectors.cursor import CursorStore
from connectors.fields import Row, cell
from connectors.mapping import Mapping
from schemas.event import Event


def version_id(previous: uuid.UUID, digest: bytes) -> uuid.UUID:
    """The id of a changed row's event: chained to the event it updates, so a row that
    changes back to an earlier content still makes a new event."""
    return uuid.uuid5(NAMESPACE, f"{previous}/{digest.hex()}")


@dataclass
class Sifted:
    events: list[Event] = field(default_factory=list)  # to send: new rows and changed ones
    changed: int = 0
    unchanged: int = 0
    record: list[tuple[str, bytes, uuid.UUID]] = field(default_factory=list)  # to save


class ChangeTracker:
    """Compares converted rows with the cursor store; one per run."""

    def __init__(self, store: CursorStore, mapping: Mapping, nulls: Iterable[str]) -> None:
        self.store = store
        self.key_column = mapping.source.id
        self.columns = sorted(mapping.columns())
        self.nulls = frozenset(nulls)

    def digest(self, row: Row) -> bytes:
        """Of the cells the mapping reads, as the converter sees them (a date as ISO text)."""
        cells = [[c, cell(row, c, self.nulls)] for c in self.columns]
        return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).digest()[:16]

    def sift(self, rows: list[Row], conv: Conversion) -> Sifted:
        digests: dict[str, bytes] = {}
        for row in rows:
            key = cell(row, self.key_column, self.nulls)
            if key is not None:
                digests.setdefault(key, self.digest(row))  # a repeat is the converter's reject
        keys = [_row_id(e) for e in conv.events]
        known = self.store.known(keys)
        out = Sifted()
        for event, key in zip(conv.events, keys, strict=True):
            digest, before = digests[key], known.get(key)
            if before is None:
                out.events.append(event)
            elif before.digest == digest:
                out.unchanged += 1
                continue
            else:
                update = {"event_id": version_id(before.event_id, digest)}
                event = event.model_copy(update={**update, "refs": [before.event_id]})
                out.events.append(event)
                out.changed += 1
            out.record.append((key, digest, event.event_id))
        return out

    def save(self, sifted: Sifted, position: tuple[str, Any] | None) -> None:
        self.store.save(sifted.record, position)


def _row_id(event: Event) -> str:
    return str(event.properties["row_id"])  # the converter always sets it: the row id cell
