"""The persisted cursor of an incremental source: what lets a second run, or a daemon after a
restart, send only what is new or changed.

One SQLite file per source system (``STATE_DIR/cursor/SYSTEM.sqlite``; the system scopes the
row ids, as it scopes the event ids), locked to one process like the outbox:

- ``position``: the source's own place to resume from, per source name (JSON: the SQL cursor
  value, with its type);
- ``row``: row id -> a digest of the row's mapped cells and the event id last sent for it, so a
  row read again (a whole spreadsheet re-read, rows tied on the SQL cursor, a lookback window)
  is sent again only when its content changed.

A chunk's state is saved after its events are committed to the outbox, never before: a crash
in between re-reads those rows, and the deterministic ids make the second copy a duplicate that
the outbox replaces and fusion drops.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from connectors.outbox import hold_lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS position (
    source TEXT PRIMARY KEY,
    value  TEXT NOT NULL        -- JSON: {"type": ..., "value": ...}
);
CREATE TABLE IF NOT EXISTS row (
    key      TEXT PRIMARY KEY,  -- the [source] id cell
    digest   BLOB NOT NULL,     -- of the mapped cells when last sent
    event_id BLOB NOT NULL      -- the event last sent for this row
) WITHOUT ROWID;
"""

_LOOKUP = 500  # keys per SELECT ... IN (...) (SQLite's default limit is 32,766 variables)


class Known(NamedTuple):
    digest: bytes
    event_id: uuid.UUID


def default_cursor_path(state_dir: Path, system: str) -> Path:
    return state_dir / "cursor" / f"{system}.sqlite"


class CursorStore:
    """The cursor file of one source system, held by this process while open."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = hold_lock(path, "one run per source system at a time")
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def position(self, source: str) -> Any | None:
        row = self._db.execute("SELECT value FROM position WHERE source = ?", (source,)).fetchone()
        return None if row is None else decode_value(json.loads(row[0]))

    def known(self, keys: Iterable[str]) -> dict[str, Known]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Known] = {}
        for i in range(0, len(wanted), _LOOKUP):
            part = wanted[i : i + _LOOKUP]
            marks = ",".join("?" * len(part))
            cur = self._db.execute(
                f"SELECT key, digest, event_id FROM row WHERE key IN ({marks})", part
            )
            found.update((k, Known(d, uuid.UUID(bytes=e))) for k, d, e in cur)
        return found

    def save(
        self, rows: Iterable[tuple[str, bytes, uuid.UUID]], position: tuple[str, Any] | None
    ) -> None:
        """Record sent rows and the new position in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO row (key, digest, event_id) VALUES (?, ?, ?)",
                [(k, d, e.bytes) for k, d, e in rows],
            )
            if position is not None:
                source, value = position
                self._db.execute(
                    "INSERT OR REPLACE INTO position (source, value) VALUES (?, ?)",
                    (source, json.dumps(encode_value(value))),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM row").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # closing the handle releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- typed JSON: a cursor value goes back to the database as the type it came as ----------


def encode_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a usable cursor value: {value!r}")
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, int | float | str):
        return {"type": type(value).__name__, "value": value}
    raise TypeError(f"not a usable cursor value: {value!r} ({type(value).__name__})")


def decode_value(data: dict[str, Any]) -> Any:
    kind, value = data["type"], data["value"]
    decoders: dict[str, Any] = {
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "decimal": Decimal,
        "int": int,
        "float": float,
        "str": str,
    }
    return decoders[kind](value)
