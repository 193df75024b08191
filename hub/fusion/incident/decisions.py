"""A principal's word on an incident (verified, refuted, split), as fusion reads it from the
``verification`` events the hub's API writes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from schemas.event import DECISION_SOURCE

log = logging.getLogger(__name__)

# An incident id as it is now (an id merged away resolves through its alias).
CURRENT = """
SELECT i.id FROM incident i
WHERE i.id = coalesce((SELECT incident_id FROM incident_alias WHERE alias = %(id)s), %(id)s)
"""


@dataclass(frozen=True)
class Decision:
    """A principal's word on an incident, carried by a ``verification`` event (the API writes
    them): ``properties`` = {"decision": verified|refuted|split, "incident_id", "reason",
    "event_id" (split: the report to take out)}; the reporter is the principal."""

    event_id: uuid.UUID
    decision: str
    incident_id: uuid.UUID | None
    report_id: uuid.UUID | None
    by: str
    at: Any
    reason: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Decision:
        props = orjson.loads(row["properties"]) if row.get("properties") else {}
        return cls(
            event_id=uuid.UUID(row["event_id"]),
            decision=str(props.get("decision", "")),
            incident_id=_uuid(props.get("incident_id")),
            report_id=_uuid(props.get("event_id")),
            by=row["reporter"] or row["source_system"],
            at=row["observed_at"],
            reason=props.get("reason"),
        )

    def detail(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "decision": self.decision}


# Decisions are the hub API's (``schemas.event.DECISION_SOURCE``), which checks who may rule; a
# verification event from anywhere else is stored as sent and changes nothing (in production,
# Kafka ACLs keep connectors from writing as the API).


def decisions_of(rows: Iterable[dict[str, Any]]) -> list[Decision]:
    out = []
    for row in rows:
        if (row["source_system"], row["source_connector"]) != DECISION_SOURCE:
            log.warning("verification event %s not from the hub's API: ignored", row["event_id"])
            continue
        out.append(Decision.of(row))
    return out


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def current_id(conn: psycopg.Connection[Any], incident: uuid.UUID | None) -> uuid.UUID | None:
    if incident is None:
        return None
    row = conn.execute(CURRENT, {"id": incident}).fetchone()
    return row[0] if row is not None else None
