"""The change log: what a batch changed in the picture, recorded in the batch's transaction.

The last stage of a batch (``hub.fusion.stages``). Every writer of the picture draws an update
sequence for each row it writes (``incident_update_seq``, ``risk_update_seq``,
``resource_update_seq``), and the incident timeline numbers its entries; ``picture_change_mark``
keeps, per source, how far the log has looked. The rows drawn past the mark are the batch's
changes: one ``INSERT ... SELECT`` per type classifies them against the object's previous
change (the latest row of ``picture_change`` for it) and moves the mark, all inside the batch's
transaction. So the changes commit with the picture and the consumer offsets: a crash rolls
both back, a replay stores nothing new and so records nothing (effectively-once), and a
writer that runs without this stage (``hub fusion recluster`` before it had one) is recorded
by the next batch instead of being lost.

``pg_notify`` inside the transaction wakes the stream's listeners when it commits.

Order: ``picture_change.seq`` is an identity drawn while the batch holds the global sequence
lock (``hub.fusion.sink.EVENT_SEQ_LOCK``), so with today's one writer at a time, sequence order
is commit order and a reader walking ``seq`` never skips a late commit. A scale-out of fusion
that drops the global lock must keep that (draw ``seq`` under a commit-order lock, or let
readers hold back behind the oldest in-flight transaction, ``pg_snapshot_xmin``).

Not recorded: objects that disappear (an incident merged away, whose survivor records
``merged``; a risk cell forgotten when it fades to nothing; a withdrawn resource balance): the
stream sends the object as its list endpoint shows it, and these are no longer listed.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from hub.fusion.stages import Batch
from hub.store.change_queries import CHANNEL

log = logging.getLogger(__name__)


# The incidents written past the mark, with what the timeline says happened to them in the
# batch, and each one's previous change of ``type`` (a LATERAL probe of the object index).
_TOUCHED = """
WITH mark AS (
    SELECT (SELECT seq FROM picture_change_mark WHERE source = 'incident') AS incident,
           (SELECT seq FROM picture_change_mark WHERE source = 'timeline') AS timeline
), touched AS (
    SELECT i.* FROM incident i, mark WHERE i.updated_seq > mark.incident
), happened AS (
    SELECT t.incident_id, bool_or(t.what = 'merged') AS merged,
           bool_or(t.what = 'report_split') AS split, max(t.id) AS last_id
    FROM incident_timeline t, mark WHERE t.id > mark.timeline GROUP BY t.incident_id
)"""


def _prior(kind: str, alias: str, key: str, status: str | None = None) -> str:
    """The latest change of ``kind`` for ``key`` (and picture ``status``), as ``alias``."""
    same_status = f" AND c.status = {status}" if status else ""
    return f"""LEFT JOIN LATERAL (
        SELECT c.change, c.verification, c.level FROM picture_change c
        WHERE c.type = '{kind}' AND c.object_id = {key}{same_status}
        ORDER BY c.seq DESC LIMIT 1) {alias} ON true"""


_INCIDENTS = (
    _TOUCHED
    + """, incidents AS (
    INSERT INTO picture_change (type, change, object_id, status, communities, bbox,
        event_type, verification)
    SELECT 'incident', x.change, x.id::text, x.status, x.communities, ST_Envelope(x.geom),
        x.event_type, x.verification
    FROM (
        SELECT i.*, CASE
            WHEN i.state = 'closed' THEN
                CASE WHEN p.change IS DISTINCT FROM 'closed' THEN 'closed' END
            WHEN i.verification IN ('verified', 'refuted')
                AND i.verification IS DISTINCT FROM p.verification THEN i.verification
            WHEN h.merged THEN 'merged'
            WHEN h.split THEN 'split'
            WHEN p.change IS NULL THEN 'created'
            ELSE 'updated' END AS change
        FROM touched i LEFT JOIN happened h ON h.incident_id = i.id
        """
    + _prior("incident", "p", "i.id::text")
    + """
    ) x
    WHERE x.change IS NOT NULL
    ORDER BY x.updated_seq
    RETURNING seq
), warnings AS (
    INSERT INTO picture_change (type, change, object_id, status, communities, bbox,
        event_type, verification)
    SELECT 'warning', x.change, x.id::text, x.status, x.communities || x.neighbours,
        ST_Envelope(x.geom), x.event_type, x.verification
    FROM (
        SELECT i.*, CASE
            WHEN i.warning AND i.state = 'open' THEN
                CASE WHEN p.change IS NULL OR p.change = 'lowered' THEN 'raised'
                     ELSE 'changed' END
            WHEN p.change IS NOT NULL AND p.change <> 'lowered' THEN 'lowered' END AS change
        FROM touched i
        """
    + _prior("warning", "p", "i.id::text")
    + """
    ) x
    WHERE x.change IS NOT NULL
    ORDER BY x.updated_seq
    RETURNING seq
), moved AS (
    UPDATE picture_change_mark m SET seq = v.seq
    FROM (VALUES ('incident', (SELECT max(updated_seq) FROM touched)),
                 ('timeline', (SELECT max(last_id) FROM happened))) v(source, seq)
    WHERE m.source = v.source AND v.seq IS NOT NULL
)
SELECT (SELECT count(*) FROM incidents) + (SELECT count(*) FROM warnings),
       greatest((SELECT max(seq) FROM incidents), (SELECT max(seq) FROM warnings))
"""
)

_LEVEL_RANK = "array_position(ARRAY['blue', 'yellow', 'orange', 'red'], {})"

# A risk cell's change is its colour's: cells re-scored to the same level record nothing.
_RISK = (
    """
WITH mark AS (SELECT seq FROM picture_change_mark WHERE source = 'risk'),
touched AS (SELECT r.* FROM risk_cell r, mark WHERE r.updated_seq > mark.seq),
recorded AS (
    INSERT INTO picture_change (type, change, object_id, status, communities, bbox, level)
    SELECT 'risk', x.change, x.grid_cell, x.status,
        CASE WHEN x.community_id IS NULL THEN '{}'::text[] ELSE ARRAY[x.community_id] END,
        ST_Envelope(x.geom), x.level
    FROM (
        SELECT r.*, CASE sign("""
    + _LEVEL_RANK.format("r.level")
    + " - "
    + _LEVEL_RANK.format("coalesce(p.level, 'blue')")
    + """)
            WHEN 1 THEN 'raised' WHEN -1 THEN 'lowered' END AS change
        FROM touched r
        """
    + _prior("risk", "p", "r.grid_cell", "r.status")
    + """
    ) x
    WHERE x.change IS NOT NULL
    ORDER BY x.updated_seq
    RETURNING seq
), moved AS (
    UPDATE picture_change_mark SET seq = (SELECT max(updated_seq) FROM touched)
    WHERE source = 'risk' AND EXISTS (SELECT 1 FROM touched)
)
SELECT (SELECT count(*) FROM recorded), (SELECT max(seq) FROM recorded)
"""
)

# Every balance written is a change (the resource stage rewrites only a different statement).
_RESOURCES = """
WITH mark AS (SELECT seq FROM picture_change_mark WHERE source = 'resource'),
touched AS (SELECT b.* FROM resource_balance b, mark WHERE b.updated_seq > mark.seq),
recorded AS (
    INSERT INTO picture_change (type, change, object_id, status, communities, bbox, level)
    SELECT 'resource', 'changed',
        concat_ws('/', b.community_id, b.resource_type, b.unit, b.direction), b.status,
        ARRAY[b.community_id], b.geom, b.direction
    FROM touched b ORDER BY b.updated_seq
    RETURNING seq
), moved AS (
    UPDATE picture_change_mark SET seq = (SELECT max(updated_seq) FROM touched)
    WHERE source = 'resource' AND EXISTS (SELECT 1 FROM touched)
)
SELECT (SELECT count(*) FROM recorded), (SELECT max(seq) FROM recorded)
"""


class ChangeStage:
    """Records the batch's changes of the picture (``picture_change``) and wakes listeners."""

    name = "changes"

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing to prepare."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> int:
        """After every other stage, in the batch's transaction; returns changes recorded."""
        recorded, last = 0, None
        for statement in (_INCIDENTS, _RISK, _RESOURCES):
            row = conn.execute(statement).fetchone()
            if row is not None and row[0]:
                recorded += int(row[0])
                last = int(row[1]) if last is None else max(last, int(row[1]))
        if last is not None:  # delivered when the transaction commits, never before
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(last)))
        return recorded
