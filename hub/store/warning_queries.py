"""The read side of the warnings, as ``/v1/warnings`` needs it: open incidents that fusion
flagged as warnings (``hub.fusion.warnings``), with the communities they are flagged to and the
highest threshold level among their sensor warnings.

A warning is an incident: the listing is ``incident_queries.list_incidents`` (the same columns,
filters, order and caller's reach), narrowed to warnings; what only a warning has comes from
one more query for the page's rows. The level is read from the member alerts the caller may see
(the events' reach), like an incident's provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, any_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from hub.store.incident_queries import INCIDENT, REPORT, IncidentFilter, list_incidents
from hub.store.queries import EVENT, BBox
from hub.store.reach import ALL_INCIDENTS, IncidentReach
from schemas.picture import DERIVED_ALERT_CONNECTOR, RAISED_LEVELS


@dataclass(frozen=True)
class WarningFilter:
    """What ``GET /v1/warnings`` may filter on; ``None`` means no condition (but ``status``:
    the drill pictures are shown only when asked for)."""

    status: str = "actual"
    bbox: BBox | None = None
    since: datetime | None = None  # last_observed_at >= since
    community: str | None = None  # warnings in that community, or flagged to it


@dataclass(frozen=True)
class WarningRow:
    incident: Row[Any]  # the incident's columns, as ``list_incidents`` gives them
    neighbours: list[str]  # communities the warning is flagged to
    level: str | None  # the highest threshold level of its visible sensor warnings


def _warnings(f: WarningFilter, visible: IncidentReach) -> IncidentReach:
    """The caller's reach narrowed to the warnings asked for."""
    c = INCIDENT.c
    where: ColumnElement[bool] = and_(visible.where, c.warning)
    if f.community is not None:
        wanted = literal(f.community)
        where = and_(where, or_(wanted == any_(c.communities), wanted == any_(c.neighbours)))
    return IncidentReach(where, visible.members)


def _level_rank(visible: IncidentReach) -> Any:
    """1..3 (yellow..red) for the highest level among an incident's live, visible threshold
    warnings; NULL when it has none."""
    e, r = EVENT.c, REPORT.c
    level = e.properties["level"].astext
    rank = case(*((level == name, n) for n, name in enumerate(RAISED_LEVELS, 1)), else_=None)
    return (
        select(func.max(rank))
        .select_from(REPORT.join(EVENT, e.event_id == r.event_id))
        .where(
            r.incident_id == INCIDENT.c.id,
            ~r.cancelled,
            e.kind == "alert",
            e.source_connector == DERIVED_ALERT_CONNECTOR,
            visible.members.where,
        )
        .scalar_subquery()
    )


def list_warnings(
    session: Session,
    f: WarningFilter,
    *,
    after_seq: int | None,
    limit: int,
    visible: IncidentReach = ALL_INCIDENTS,
) -> tuple[list[WarningRow], bool]:
    """Up to ``limit`` open, visible warnings in ``updated_seq`` order after ``after_seq``; and
    whether more exist (paging as ``list_incidents``)."""
    incidents = IncidentFilter(bbox=f.bbox, state="open", status=f.status, since=f.since)
    rows, more = list_incidents(
        session, incidents, after_seq=after_seq, limit=limit, visible=_warnings(f, visible)
    )
    return warning_rows(session, rows, visible), more


def warning_rows(
    session: Session, incidents: Sequence[Row[Any]], visible: IncidentReach
) -> list[WarningRow]:
    """``incidents`` (rows of ``list_incidents``) as warnings: with their neighbours and level
    (a lowered warning, too: the stream shows what it was flagged to)."""
    extra = _extra(session, [r.id for r in incidents], visible)
    return [WarningRow(r, *extra.get(r.id, ([], None))) for r in incidents]


def _extra(
    session: Session, ids: Sequence[Any], visible: IncidentReach
) -> dict[Any, tuple[list[str], str | None]]:
    if not ids:
        return {}
    c = INCIDENT.c
    query = select(c.id, c.neighbours, _level_rank(visible).label("rank")).where(
        c.id.in_(ids), visible.where
    )
    return {
        row.id: (list(row.neighbours), RAISED_LEVELS[row.rank - 1] if row.rank else None)
        for row in session.execute(query)
    }
