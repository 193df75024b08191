"""The audit log in PostgreSQL: append one link, stream the chain, read a principal's trail.

Every function takes a psycopg connection and leaves connection management to the caller
(``hub.store.db.connect``, or the audit middleware's own small pool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from hub.audit.chain import (
    RECORD_FIELDS,
    AuditRecord,
    ChainRow,
    ChainVerifier,
    Head,
    Verification,
    canonical_parts,
)

COLUMNS = ("id", *RECORD_FIELDS, "prev_hash", "hash")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_log"

# One statement, one round trip: lock the head, take the next id, hash (PostgreSQL splices the
# id into the canonical JSON: sha256(prev_hash || prefix || id || suffix)), write the row, move
# the head. The row lock serialises concurrent appends into one chain with gapless ids, and is
# held only while this statement runs. synchronous_commit is set for this transaction alone.
_APPEND = f"""
WITH head AS (
    SELECT last_id + 1 AS id, last_hash AS prev_hash,
           set_config('synchronous_commit', %(synchronous_commit)s, true)
    FROM audit_head FOR UPDATE
), link AS (
    SELECT id, prev_hash,
           sha256(prev_hash || %(prefix)s || convert_to(id::text, 'UTF8') || %(suffix)s) AS hash
    FROM head
), appended AS (
    INSERT INTO audit_log ({", ".join(COLUMNS)})
    SELECT link.id, {", ".join(f"%({c})s" for c in RECORD_FIELDS)}, link.prev_hash, link.hash
    FROM link
    RETURNING id, prev_hash, hash
)
UPDATE audit_head SET last_id = appended.id, last_hash = appended.hash
FROM appended
RETURNING appended.id, appended.prev_hash, appended.hash
""".replace("%(params)s", "%(params)s::jsonb")  # params travel as JSON text (orjson)


def append(conn: psycopg.Connection[Any], record: AuditRecord, *, durable: bool = True) -> ChainRow:
    """Link ``record`` to the chain and store it: one statement, committed when it returns
    (on an autocommit connection in one round trip).

    ``durable=False`` commits without waiting for the WAL flush (``synchronous_commit = off``):
    a PostgreSQL crash can then lose the last fraction of a second of such rows, always as a
    tail of the chain (WAL order), never as a hole in it.
    """
    prefix, suffix = canonical_parts(record)
    values: dict[str, Any] = {name: getattr(record, name) for name in RECORD_FIELDS}
    values["params"] = orjson.dumps(record.params).decode()
    values.update(prefix=prefix, suffix=suffix, synchronous_commit="on" if durable else "off")
    if conn.autocommit:  # the statement is its own transaction: no BEGIN/COMMIT round trips
        found = conn.execute(_APPEND, values).fetchone()
    else:
        with conn.transaction():
            found = conn.execute(_APPEND, values).fetchone()
    if found is None:
        raise RuntimeError("audit_head is empty: run `hub db upgrade`")
    return ChainRow(found[0], record, bytes(found[1]), bytes(found[2]))


def read_head(conn: psycopg.Connection[Any]) -> Head:
    found = conn.execute("SELECT last_id, last_hash FROM audit_head").fetchone()
    if found is None:
        raise RuntimeError("audit_head is empty: run `hub db upgrade`")
    return Head(found[0], bytes(found[1]))


def _chain_row(r: dict[str, Any]) -> ChainRow:
    record = AuditRecord(**{name: r[name] for name in RECORD_FIELDS})
    return ChainRow(r["id"], record, bytes(r["prev_hash"]), bytes(r["hash"]))


def iter_chain(conn: psycopg.Connection[Any], batch: int = 5000) -> Iterator[ChainRow]:
    """Every row in id order through a server-side cursor: memory stays flat at any size."""
    with conn.cursor("audit_chain", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(f"{_SELECT} ORDER BY id")
        for r in cur:
            yield _chain_row(r)


def verify_log(
    conn: psycopg.Connection[Any],
    on_start: Callable[[Head], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_problems: int = 100,
) -> Verification:
    """Walk the whole chain in one snapshot (concurrent appends neither race nor show up).

    ``on_start`` gets the head (its ``last_id`` is the row count of an intact log: a progress
    total without a ``count(*)`` scan); ``on_progress`` gets the rows checked so far, every 1000.
    """
    with conn.transaction():
        # the first statement of the transaction, so the connection's own settings stay as they are
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = read_head(conn)
        if on_start is not None:
            on_start(head)
        verifier = ChainVerifier(max_problems)
        for row in iter_chain(conn):
            verifier.feed(row)
            if on_progress is not None and verifier.result.rows % 1000 == 0:
                on_progress(verifier.result.rows)
        return verifier.finish(head)


@dataclass(frozen=True)
class TrailEntry:
    id: int
    record: AuditRecord


def trail(
    conn: psycopg.Connection[Any],
    *,
    subject: str,
    since: datetime | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[TrailEntry]:
    """What one principal did, oldest first: accountability after the event.

    Page by passing the last ``id`` seen as ``after_id``. The caller decides who may read whose
    trail (a department its own; an admin anyone's); this function only reads.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = f"{_SELECT} WHERE subject = %s AND id > %s"
    args: list[Any] = [subject, after_id]
    if since is not None:
        query += " AND at >= %s"
        args.append(since)
    query += " ORDER BY id LIMIT %s"
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, args).fetchall()
    return [TrailEntry(r["id"], _chain_row(r).record) for r in rows]
