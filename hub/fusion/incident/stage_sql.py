"""The incident stage's writes that are plain SQL: the timeline, merges (members, aliases and
decisions follow the surviving id), cancels, and the batch's memberships."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def timeline(
    conn: psycopg.Connection[Any],
    incident: uuid.UUID | str,
    what: str,
    event_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO incident_timeline (incident_id, at, what, event_id, detail)"
        " VALUES (%s, coalesce((SELECT observed_at FROM event WHERE event_id = %s), now()),"
        " %s, %s, %s)",
        (incident, event_id, what, event_id, Jsonb(detail or {})),
    )


# Incidents merged into others (``%(old)s`` -> ``%(new)s``, by old id): members, timeline and
# aliases follow, the old id becomes an alias, a decision on the merged-away incident survives
# when the survivor has none (the first such, by old id), and the timeline records the merge.
MOVES = "SELECT * FROM unnest(%(old)s::uuid[], %(new)s::uuid[]) AS m(old, new)"
MERGES = (
    f"UPDATE incident_timeline t SET incident_id = m.new FROM ({MOVES}) m"
    " WHERE t.incident_id = m.old",
    f"UPDATE incident_alias a SET incident_id = m.new FROM ({MOVES}) m WHERE a.incident_id = m.old",
    # cancelled members go along (the live ones move with the new partition): the old row is
    # deleted, and no member may point at a missing incident
    f"UPDATE incident_report r SET incident_id = m.new FROM ({MOVES}) m"
    " WHERE r.incident_id = m.old AND r.cancelled",
    f"INSERT INTO incident_alias (alias, incident_id) SELECT old, new FROM ({MOVES}) m"
    " ORDER BY old ON CONFLICT (alias) DO UPDATE SET incident_id = EXCLUDED.incident_id",
    f"""UPDATE incident n SET verification = o.verification, decided_by = o.decided_by,
        decided_at = o.decided_at, decision_reason = o.decision_reason
    FROM (SELECT DISTINCT ON (m.new) m.new, i.* FROM ({MOVES}) m
          JOIN incident i ON i.id = m.old WHERE i.decided_at IS NOT NULL
          ORDER BY m.new, m.old) o
    WHERE n.id = o.new AND n.decided_at IS NULL""",
    "INSERT INTO incident_timeline (incident_id, at, what, event_id, detail)"
    f" SELECT new, now(), 'merged', NULL, jsonb_build_object('from', old::text) FROM ({MOVES}) m"
    " ORDER BY old",
)

# The reports cancelled, with where they were (the grid cells that may have lost an incident).
CANCEL = """
UPDATE incident_report r SET cancelled = true FROM event e
WHERE r.event_id = ANY(%s::uuid[]) AND NOT r.cancelled AND e.event_id = r.event_id
RETURNING r.incident_id, r.event_id, r.component_id, e.status, e.grid_cell
"""

# status, event_type and observed_at repeat the event's: the candidate search then reads one
# narrow index of live reports (``IN_SPANS``) instead of the whole event history.
COPY_REPORTS = (
    "COPY incident_report (event_id, incident_id, status, event_type, observed_at, pinned,"
    " component_id, lon, lat) FROM STDIN (FORMAT csv)"
)
MOVE_REPORTS = """
UPDATE incident_report r SET incident_id = m.incident, component_id = m.component
FROM unnest(%(event_id)s::uuid[], %(incident)s::uuid[], %(component)s::uuid[])
    AS m(event_id, incident, component)
WHERE r.event_id = m.event_id
"""

# Cancels whose report is not stored at all yet (out of order): applied when it arrives.
PEND_CANCELS = """
INSERT INTO pending_cancel (ref, cancel_id)
SELECT t.ref, t.cancel_id FROM unnest(%(refs)s::uuid[], %(cancels)s::uuid[]) AS t(ref, cancel_id)
WHERE NOT EXISTS (SELECT 1 FROM event e WHERE e.event_id = t.ref)
ON CONFLICT (ref) DO NOTHING
"""
ANY_PENDING = "SELECT EXISTS (SELECT 1 FROM pending_cancel)"
TAKE_PENDING = "DELETE FROM pending_cancel WHERE ref = ANY(%s::uuid[]) RETURNING ref::text"
