"""The resource stage of fusion: per community and picture, the stock and the needs its
``resource`` events state (``schemas.resource``), in the batch's transaction.

A balance (``resource_balance``, one row per community, status, resource type, unit and
direction) holds the community's *current* statement: the latest by ``observed_at`` (ties: the
greater ``event_id``) that no cancel withdrew. A ``cancel`` withdraws a statement when its
``refs`` name it and it comes from the same community and picture (a neighbour, or a drill,
cannot erase a community's real stock).

Per batch, in two statements: the batch's new statements and cancels are read; then every
balance they touch is recomputed from the stored statements (``_RECOMPUTE``): the latest live
one per key (one range scan of the partial index ``event_resource_statement``, the cancels found
through the GIN index on ``event.refs``) is written, or the row deleted when none is left. So a
late older statement changes nothing, a cancel falls back to the statement before, and a cancel
that arrived before its statement keeps it out; replaying a batch gives the same balances.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from pydantic import ValidationError

from hub.fusion.stages import Batch
from schemas.resource import parse_resource

log = logging.getLogger(__name__)

_NEW = """
SELECT e.event_id, e.kind, e.community_id, e.status, e.refs,
    CASE WHEN e.kind = 'resource' THEN e.properties END AS properties
FROM fusion_new n JOIN event e ON e.event_id = n.event_id
WHERE e.kind = 'resource' OR (e.kind = 'cancel' AND e.refs <> '{}')
"""

# The statement's quantity, NULL where it is not a number the balance can hold (events stored
# before the decoder checked resource properties): such a statement never counts.
# A CASE, not an AND: only CASE promises the cast is not tried on what is not a number.
_QUANTITY = """CASE WHEN jsonb_typeof(e.properties->'quantity') IS DISTINCT FROM 'number' THEN NULL
    WHEN (e.properties->>'quantity')::numeric BETWEEN 0 AND 1e300
    THEN (e.properties->>'quantity')::float8 END"""

_RECOMPUTE = f"""
WITH touched AS (
    SELECT e.event_id FROM event e WHERE e.event_id = ANY(%(statements)s)
    UNION
    SELECT s.event_id
    FROM unnest(%(refs)s::uuid[], %(ref_community)s::text[], %(ref_status)s::text[])
         AS c(ref, community_id, status)
    JOIN event s ON s.event_id = c.ref AND s.kind = 'resource'
        AND s.community_id = c.community_id AND s.status = c.status
), keys AS (
    SELECT DISTINCT e.community_id, e.status, e.properties->>'resource_type' AS resource_type,
        e.properties->>'unit' AS unit, e.properties->>'direction' AS direction
    FROM touched t JOIN event e ON e.event_id = t.event_id
    WHERE e.properties->>'direction' IN ('available', 'needed')
        AND e.properties->>'resource_type' IS NOT NULL AND e.properties->>'unit' IS NOT NULL
), current AS (
    SELECT k.*, w.event_id, w.quantity, w.observed_at, w.geom
    FROM keys k
    LEFT JOIN LATERAL (
        SELECT e.event_id, {_QUANTITY} AS quantity, e.observed_at,
            ST_PointOnSurface(e.geom) AS geom
        FROM event e
        WHERE e.kind = 'resource' AND e.community_id = k.community_id AND e.status = k.status
            AND e.properties->>'resource_type' = k.resource_type
            AND e.properties->>'unit' = k.unit AND e.properties->>'direction' = k.direction
            AND {_QUANTITY} IS NOT NULL
            AND NOT EXISTS (
                SELECT 1 FROM event c
                WHERE c.refs <> '{{}}' AND c.refs @> ARRAY[e.event_id] AND c.kind = 'cancel'
                    AND c.community_id = e.community_id AND c.status = e.status)
        ORDER BY e.observed_at DESC, e.event_id DESC
        LIMIT 1
    ) w ON true
), withdrawn AS (
    DELETE FROM resource_balance b USING current k
    WHERE k.event_id IS NULL AND b.community_id = k.community_id AND b.status = k.status
        AND b.resource_type = k.resource_type AND b.unit = k.unit AND b.direction = k.direction
    RETURNING 1
), stated AS (
    INSERT INTO resource_balance AS b (community_id, status, resource_type, unit, direction,
        quantity, event_id, observed_at, geom, updated_seq)
    SELECT community_id, status, resource_type, unit, direction, quantity, event_id,
        observed_at, geom, nextval('resource_update_seq')
    FROM current WHERE event_id IS NOT NULL
    ORDER BY community_id, status, resource_type, unit, direction
    ON CONFLICT (community_id, status, resource_type, unit, direction) DO UPDATE SET
        quantity = EXCLUDED.quantity, event_id = EXCLUDED.event_id,
        observed_at = EXCLUDED.observed_at, geom = EXCLUDED.geom,
        updated_seq = EXCLUDED.updated_seq
    WHERE b.event_id IS DISTINCT FROM EXCLUDED.event_id  -- unchanged: keeps its updated_seq
    RETURNING 1
)
SELECT (SELECT count(*) FROM stated), (SELECT count(*) FROM withdrawn)
"""


@dataclass
class ResourceCounts:
    statements: int = 0  # new valid statements in the batch
    left_out: int = 0  # new statements whose properties fusion cannot read
    cancels: int = 0  # new cancels naming some event (resource or not)
    changed: int = 0  # balances written (new, or a different current statement)
    withdrawn: int = 0  # balances deleted: no live statement left


class ResourceStage:
    """Keeps ``resource_balance`` up to date with one batch's new events (stateless)."""

    name = "resources"

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing per connection: the batch's rows travel as arrays."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> ResourceCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``."""
        counts = ResourceCounts()
        if batch is not None and batch.lacks(("resource", "cancel")):
            return counts
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            rows = cur.execute(_NEW).fetchall()
        statements = _statements([r for r in rows if r["kind"] == "resource"], counts)
        cancels = [(ref, r) for r in rows if r["kind"] == "cancel" for ref in r["refs"]]
        counts.cancels = len({r["event_id"] for _, r in cancels})
        if not statements and not cancels:
            return counts
        params = {
            "statements": statements,
            "refs": [ref for ref, _ in cancels],
            "ref_community": [r["community_id"] for _, r in cancels],
            "ref_status": [r["status"] for _, r in cancels],
        }
        row = conn.execute(_RECOMPUTE, params).fetchone()
        counts.changed, counts.withdrawn = row if row is not None else (0, 0)
        return counts


def _statements(rows: list[dict[str, Any]], counts: ResourceCounts) -> list[uuid.UUID]:
    """The ids of the new statements fusion can read; one it cannot (the decoder refuses them,
    so only an event stored some other way) is logged and left out, never failing the batch."""
    good = []
    for row in rows:
        try:
            parse_resource(row["properties"])
        except ValidationError as exc:
            counts.left_out += 1
            log.warning("resource event %s left out of the balances: %s", row["event_id"], exc)
            continue
        good.append(row["event_id"])
    counts.statements = len(good)
    return good
