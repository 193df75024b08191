"""Durable outbox: converted events wait in SQLite until the broker has acknowledged them.

One file per connector instance, in WAL mode with ``synchronous=FULL``: a chunk committed here
survives a crash of the process, of the broker or of the network. Rows are sent in ``seq``
order; once a whole batch is acknowledged the ``acked`` watermark moves past it (one tiny
UPDATE instead of deleting 20,000 rows and their index entries), and a fully drained outbox is
emptied at once. Delivery is at-least-once: a copy the broker took but never acknowledged is
sent again, and fusion drops it by ``event_id``.

``event_id`` is unique in the outbox: putting an event that is already pending replaces it and
gives it a new ``seq``, so a file replayed while the broker was down is still sent only once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from hub.errors import Conflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: seqs order runs
    event_id BLOB NOT NULL UNIQUE,
    key      BLOB NOT NULL,
    value    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS watermark (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    acked INTEGER NOT NULL  -- every row with seq <= acked has been acknowledged by the broker
);
INSERT OR IGNORE INTO watermark (id, acked) VALUES (1, 0);
"""


class OutboxBusy(Conflict, RuntimeError):
    """Another connector process holds this outbox; two senders would double every event."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    seq: int
    key: bytes
    value: bytes


def default_outbox_path(state_dir: Path, system: str) -> Path:
    return state_dir / "outbox" / f"{system}.sqlite"


class Outbox:
    """A SQLite outbox, locked to this process for as long as it is open."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = hold_lock(path, "give each connector instance its own --outbox")
        # autocommit mode: transactions are explicit, one per chunk.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def put(self, items: Iterable[tuple[uuid.UUID, bytes, bytes]]) -> list[OutboxRecord]:
        """Store (event_id, key, value) rows in one transaction; returns them with their seqs."""
        rows = [(eid.bytes, key, value) for eid, key, value in items]
        with self._transaction():
            first = self.last_seq() + 1
            self._db.executemany(
                "INSERT OR REPLACE INTO outbox (event_id, key, value) VALUES (?, ?, ?)", rows
            )
            # AUTOINCREMENT hands out consecutive seqs and this process holds the only writer
            # lock, so the new rows are first..last; checked rather than assumed.
            if self.last_seq() != first + len(rows) - 1:
                raise RuntimeError(f"{self.path}: unexpected seq allocation")
        return [OutboxRecord(first + i, r[1], r[2]) for i, r in enumerate(rows)]

    def pending(self, limit: int) -> list[OutboxRecord]:
        """The oldest unacknowledged rows: what an earlier run left goes before newer rows."""
        cur = self._db.execute(
            "SELECT seq, key, value FROM outbox WHERE seq > (SELECT acked FROM watermark) "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [OutboxRecord(*row) for row in cur]

    def acknowledge(self, seqs: Sequence[int]) -> None:
        """Record acknowledged rows (ascending seqs). The normal case, every pending row up to
        the last one acknowledged, only moves the watermark; otherwise the rows are deleted."""
        if not seqs:
            return
        with self._transaction():
            below = self._db.execute(
                "SELECT count(*) FROM outbox WHERE seq > (SELECT acked FROM watermark) "
                "AND seq <= ?",
                (seqs[-1],),
            ).fetchone()[0]
            if below == len(seqs):
                self._db.execute("UPDATE watermark SET acked = ? WHERE id = 1", (seqs[-1],))
            else:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def acked_ids(self, after: int, upto: int) -> set[bytes]:
        """Event ids (16-byte) of acknowledged rows with ``after < seq <= upto``."""
        cur = self._db.execute(
            "SELECT event_id FROM outbox WHERE seq > ? AND seq <= min(?, "
            "(SELECT acked FROM watermark))",
            (after, upto),
        )
        return {row[0] for row in cur}

    def compact(self) -> None:
        """Drop acknowledged rows; an outbox with nothing pending is emptied in one go."""
        with self._transaction():
            if self.count() == 0:
                self._db.execute("DELETE FROM outbox")  # SQLite's truncate optimisation
            else:
                self._db.execute("DELETE FROM outbox WHERE seq <= ?", (self.acked(),))

    def count(self) -> int:
        """Rows still waiting for the broker."""
        cur = self._db.execute("SELECT count(*) FROM outbox WHERE seq > ?", (self.acked(),))
        return int(cur.fetchone()[0])

    def acked(self) -> int:
        return int(self._db.execute("SELECT acked FROM watermark").fetchone()[0])

    def last_seq(self) -> int:
        """The highest seq ever given out (rows above it were put later)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def hold_lock(path: Path, hint: str) -> IO[bytes]:
    """An exclusive lock on ``path.lock`` (holding our pid) for as long as the handle is open;
    ``OutboxBusy`` when another process holds it."""
    handle = open(f"{path}.lock", "ab")  # noqa: SIM115 - held open for the owner's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise OutboxBusy(
            f"{path} is in use by another connector (pid file {path}.lock); {hint}"
        ) from exc
    handle.truncate(0)
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle
