"""The picture's changes as one principal sees them: the ``data`` of the stream's events and
the body of a webhook delivery, built by this one function for both.

Each change of the log (``picture_change``, written by fusion) is re-read through the
principal's reach, in a fresh session with row-level security set for it (``open_reach``):
``object`` is the Feature the type's list endpoint gives that principal now, and a change
whose object is out of reach (or gone since) is left out. So what a stream client or a webhook
receives is exactly what the list endpoints would list for it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hub.access.features import balance_feature, incident_feature, risk_feature, warning_feature
from hub.access.principal import Principal
from hub.access.reach import Reach
from hub.access.session import ZoneCache, open_reach
from hub.settings import Settings
from hub.store import change_queries as changes
from hub.store.change_queries import ChangeFilter
from hub.store.db import session_scope
from hub.store.warning_queries import warning_rows

READ_LIMIT = 500  # changes per read of the log: a reader far behind catches up in steps
# The scope of each type's list endpoint: a change goes only to a principal holding it.
SCOPE_OF = {
    "incident": "incidents:read",
    "warning": "incidents:read",
    "risk": "risk:read",
    "resource": "resources:read",
}
SCOPES = frozenset(SCOPE_OF.values())


def readable(principal: Principal, types: tuple[str, ...]) -> tuple[str, ...]:
    """The change types among ``types`` whose list endpoint ``principal`` may read."""
    return tuple(t for t in types if principal.has(SCOPE_OF[t]))


def _objects(
    session: Session, reach: Reach, rows: list[Any], status: str
) -> dict[tuple[str, str], Any]:
    """The objects of ``rows`` the principal sees, by (type, object id), as their list
    endpoints' Features."""
    ids: dict[str, list[str]] = {}
    for row in rows:
        ids.setdefault(row.type, []).append(row.object_id)
    found: dict[tuple[str, str], Any] = {}
    incident_ids = sorted(set(ids.get("incident", []) + ids.get("warning", [])))
    incidents = (
        changes.incidents_by_id(session, incident_ids, status, reach.incidents)
        if incident_ids
        else []
    )
    for row in incidents:
        found["incident", str(row.id)] = incident_feature(row)
    if "warning" in ids:
        caller = reach.principal.community_id if reach.principal.kind == "community" else None
        wanted = set(ids["warning"])
        chosen = [r for r in incidents if str(r.id) in wanted]
        for warning in warning_rows(session, chosen, reach.warnings):
            found["warning", str(warning.incident.id)] = warning_feature(warning, caller)
    if "risk" in ids:
        for row in changes.risk_by_cell(session, ids["risk"], status, reach.risk):
            found["risk", row.grid_cell] = risk_feature(row)
    if "resource" in ids:
        for row in changes.balances_by_key(session, ids["resource"], status, reach.resources):
            found["resource", changes.balance_key(row)] = balance_feature(row)
    return found


def changes_seen(
    settings: Settings,
    principal: Principal,
    zones: ZoneCache,
    filters: ChangeFilter,
    after: int | None,
    limit: int = READ_LIMIT,
) -> tuple[list[dict[str, Any]], int]:
    """The changes after ``after`` (None: from now on) matching ``filters`` that ``principal``
    sees, each as ``{"seq", "type", "change", "id", "at", "object"}``, and the sequence read up
    to (the cursor of the next read: past changes left out, so they are not read again)."""
    with session_scope(settings, api=True) as session:
        reach = open_reach(session, principal, zones, settings.neighbour_distance_m)
        if after is None:
            return [], changes.last_seq(session)
        # The head first: every change up to it is committed, and seen by the next statement.
        head = changes.head(session)
        rows = changes.changes_after(session, filters, after, limit, upto=head)
        # All read up to the head: the cursor moves past the changes out of reach or filtered
        # out too, so the next read does not scan them again.
        cursor = max(after, head) if len(rows) < limit else rows[-1].seq
        if not rows:
            return [], cursor
        objects = _objects(session, reach, rows, filters.status)
    seen = []
    for row in rows:
        feature = objects.get((row.type, row.object_id))
        if feature is None:  # out of reach, or gone since (merged away, forgotten)
            continue
        seen.append(
            {
                "seq": row.seq,
                "type": row.type,
                "change": row.change,
                "id": row.object_id,
                "at": row.at,
                "object": feature,
            }
        )
    return seen, cursor
