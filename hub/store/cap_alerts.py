"""The CAP alert series of the incidents (table ``cap_alert``, migration 0013_cap).

A CAP message, once sent, is immutable: its identifier and ``sent`` time never change, and every
later message of the series references it. An incident's series grows by one revision whenever
what its alert says (its ``digest``) changes: the first is an ``Alert``, later ones ``Update``,
and ``Cancel`` when the alert no longer stands (a lowered warning, a refuted rumour); once
cancelled, the series stays so until the incident warns again (a new ``Alert``).

Revisions are recorded by the reader that first serves them (the API), through the caller's
row-level security: only incidents the caller may see get revisions. Two readers racing for
the same revision both end with the one that committed first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Table, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store import change_models  # noqa: F401  (registers cap_alert in SQLModel.metadata)
from hub.store.incident_queries import ALIAS, INCIDENT
from hub.store.reach import ALL_INCIDENTS, IncidentReach

CAP_ALERT: Table = SQLModel.metadata.tables["cap_alert"]
_RACES = 3  # a concurrent reader issued the revision first this many times in a row: give up


@dataclass(frozen=True)
class Revision:
    incident_id: uuid.UUID  # the incident it was issued for (an alias of today's, maybe)
    revision: int
    msg_type: str  # Alert | Update | Cancel
    sent: datetime  # UTC, whole seconds (CAP's dateTime has none finer)
    digest: str


def next_msg_type(series: Sequence[Revision], digest: str, cancel: bool) -> str | None:
    """The msgType of the revision to issue, or None when the latest one still holds."""
    last = series[-1] if series else None
    if last is not None and last.digest == digest:
        return None
    if last is None:
        return "Alert"  # a refuted rumour never alerted before is told as such, an Alert
    if last.msg_type == "Cancel":
        # A cancelled series stays cancelled while the incident does not warn (a change is
        # told as one more Cancel), and starts again with an Alert when it warns anew.
        return "Cancel" if cancel else "Alert"
    return "Cancel" if cancel else "Update"


def current(series: Sequence[Revision]) -> tuple[Revision, list[Revision]]:
    """The latest revision and the earlier ones it references: those of its run since the
    last Alert (a series that started again does not reference the cancelled one)."""
    *earlier, latest = series
    start = max((i for i, r in enumerate(series) if r.msg_type == "Alert"), default=0)
    return latest, earlier[start:]


def series_of(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Revision]]:
    """The recorded revisions of the incidents, oldest first, with those issued under the ids
    each absorbed (an incident renamed or merged keeps its series: a warning whose first
    report was cancelled is another id, and its Cancel must reference the earlier alerts).
    The caller's reach applies by row-level security."""
    wanted = list(ids)
    c, a = CAP_ALERT.c, ALIAS.c
    owner = func.coalesce(a.incident_id, c.incident_id).label("owner")
    rows = session.execute(
        select(owner, c.incident_id, c.revision, c.msg_type, c.sent, c.digest)
        .select_from(CAP_ALERT.outerjoin(ALIAS, a.alias == c.incident_id))
        .where(or_(c.incident_id.in_(wanted), a.incident_id.in_(wanted)))
        .order_by(owner, c.sent, c.revision)
    ).all()
    found: dict[uuid.UUID, list[Revision]] = {}
    for row in rows:
        found.setdefault(row.owner, []).append(_revision(row))
    return found


def _revision(row: Row[Any, Any, Any, Any, Any, Any]) -> Revision:
    return Revision(
        row.incident_id, row.revision, row.msg_type, row.sent.astimezone(UTC), row.digest
    )


def issue(
    session: Session,
    incident_id: uuid.UUID,
    digest: str,
    cancel: bool,
    series: list[Revision] | None = None,
) -> list[Revision]:
    """The incident's series with what it says now issued: a new revision when ``digest``
    differs from the latest one's. ``series``: as :func:`series_of` read it, if already read."""
    if series is None:
        series = series_of(session, [incident_id]).get(incident_id, [])
    for _ in range(_RACES):
        msg_type = next_msg_type(series, digest, cancel)
        if msg_type is None:
            return series
        number = max((r.revision for r in series), default=0) + 1
        sent = datetime.now(UTC).replace(microsecond=0)
        statement = (
            insert(CAP_ALERT)
            .values(
                incident_id=incident_id,
                revision=number,
                msg_type=msg_type,
                sent=sent,
                digest=digest,
            )
            .on_conflict_do_nothing()
        )
        if session.execute(statement).rowcount == 1:  # type: ignore[attr-defined]
            return [*series, Revision(incident_id, number, msg_type, sent, digest)]
        series = series_of(session, [incident_id]).get(incident_id, [])
    raise RuntimeError(f"cap_alert: revision of incident {incident_id} lost {_RACES} races")


def flags(
    session: Session, incident_id: uuid.UUID, visible: IncidentReach = ALL_INCIDENTS
) -> Row[Any, Any] | None:
    """What a CAP alert needs beyond the incident's listed columns: ``warning`` and
    ``neighbours`` (the communities a warning is flagged to)."""
    c = INCIDENT.c
    return session.execute(
        select(c.warning, c.neighbours).where(c.id == incident_id, visible.where)
    ).first()
