"""The picture's objects as GeoJSON Features, the one shape every reader gives them: the list
endpoints (``hub.api``), the stream and the webhooks (``hub.access.changes``). Here, below both
the API and the notifier, so that a webhook's body is the stream's, built by the same code.

Rows come from the store's list queries (``hub.store.*_queries``), already narrowed to the
caller's reach; geometry arrives as GeoJSON text from PostGIS and is embedded verbatim.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row

from hub.store.warning_queries import WarningRow

SCORE_DECIMALS = 2  # the lowest risk threshold a deployment would set is around 0.1


def dumps(obj: Any) -> bytes:
    """JSON bytes: UUIDs as text, Fragments verbatim, UTC datetimes as RFC 3339 with ``Z``."""
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z)


def fragment(json_text: str | bytes | None) -> orjson.Fragment | None:
    """Embed JSON text produced by the database without parsing it."""
    return None if json_text is None else orjson.Fragment(json_text)


def incident_feature(row: Row[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row.id,
        "geometry": fragment(row.geometry),
        "properties": {
            "status": row.status,
            "state": row.state,
            "category": row.category,
            "event_type": row.event_type,
            "severity": row.severity,
            "certainty": row.certainty,
            "verification": row.verification,
            "decided_by": row.decided_by,
            # datetimes in UTC from the store; dumps() writes them with Z
            "decided_at": row.decided_at,
            "decision_reason": row.decision_reason,
            "sources": row.sources,
            "reports": row.reports,
            "communities": row.communities,
            "first_observed_at": row.first_observed_at,
            "last_observed_at": row.last_observed_at,
            "updated_seq": row.updated_seq,
        },
    }


def warning_feature(warning: WarningRow, caller_community: str | None) -> dict[str, Any]:
    feature = incident_feature(warning.incident)
    feature["properties"] |= {
        "neighbours": warning.neighbours,
        "flagged_to_caller": caller_community is not None
        and caller_community in warning.neighbours,
        "level": warning.level,
    }
    return feature


def risk_feature(row: Row[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row.grid_cell,
        "geometry": fragment(row.geometry),
        "properties": {
            "status": row.status,
            "grid_cell": row.grid_cell,
            "community_id": row.community_id,
            "score": round(row.score, SCORE_DECIMALS),
            "level": row.level,
            "level_since": row.level_since,
            "incidents": row.incidents,
            "as_of": row.as_of,
            "updated_seq": row.updated_seq,
        },
    }


def balance_feature(row: Row[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": fragment(row.geometry),
        "properties": {
            "community_id": row.community_id,
            "status": row.status,
            "resource_type": row.resource_type,
            "unit": row.unit,
            "direction": row.direction,
            "quantity": row.quantity,
            "observed_at": row.observed_at,  # UTC from the store; dumps() writes Z
            "event_id": row.event_id,
            "updated_seq": row.updated_seq,
        },
    }
