"""The read side of the incidents, as ``/v1/incidents`` needs it.

As ``hub.store.queries``: SQLAlchemy Core over the SQLModel tables, every value a bound
parameter, geometries and JSON as text for the API to splice in, timestamps in UTC. The caller's
reach comes in as an :class:`~hub.store.reach.IncidentReach` (``hub.access`` compiles it): its
predicate goes into every query, and the member events are read through the events' reach, so
that rows and reporter identities out of reach never leave PostgreSQL (row-level security is
the second wall).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Subquery,
    Table,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store.queries import EVENT, BBox, in_bbox, in_utc, intersects, page_after
from hub.store.reach import ALL_INCIDENTS, EventReach, IncidentReach

INCIDENT: Table = SQLModel.metadata.tables["incident"]
REPORT: Table = SQLModel.metadata.tables["incident_report"]
ALIAS: Table = SQLModel.metadata.tables["incident_alias"]
TIMELINE: Table = SQLModel.metadata.tables["incident_timeline"]

# Shortest lengths of a degree on the WGS84 ellipsoid, for boxes that surely hold a circle.
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_319.0


@dataclass(frozen=True)
class Near:
    """Within ``radius_m`` metres (geodesic, on the spheroid) of a WGS84 point."""

    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class IncidentFilter:
    """What ``GET /v1/incidents`` may filter on; ``None`` means no condition (but ``status``:
    the drill pictures are shown only when asked for)."""

    bbox: BBox | None = None
    within_wkb: bytes | None = None  # a WGS84 (multi)polygon, validated by the API
    near: Near | None = None
    category: str | None = None
    event_type: str | None = None
    severity: str | None = None
    verification: str | None = None
    state: str | None = None
    status: str = "actual"
    since: datetime | None = None  # last_observed_at >= since
    # incidents holding any of these reports (event ids), among the reports the caller may see
    reports: tuple[uuid.UUID, ...] | None = None


def _incident_columns() -> list[Any]:
    c = INCIDENT.c
    return [
        c.id,
        c.status,
        c.state,
        c.category,
        c.event_type,
        c.severity,
        c.certainty,
        c.verification,
        c.decided_by,
        c.decided_at,
        c.decision_reason,
        c.sources,
        c.reports,
        c.communities,
        c.first_observed_at,
        c.last_observed_at,
        c.updated_seq,
        func.ST_AsGeoJSON(c.geom).label("geometry"),
    ]


def _near(n: Near) -> ColumnElement[bool]:
    point = func.ST_SetSRID(func.ST_MakePoint(n.lon, n.lat), 4326)
    within = func.ST_DWithin(func.geography(INCIDENT.c.geom), func.geography(point), n.radius_m)
    # A box in degrees that surely holds the circle lets the GiST index on geom serve the
    # geodesic test; none near a pole or across the antimeridian (the test alone is exact).
    dlat = n.radius_m / _M_PER_DEG_LAT * 1.01
    top = abs(n.lat) + dlat
    if top >= 89.0:
        return within
    dlon = n.radius_m / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(top))) * 1.01
    if n.lon - dlon < -180 or n.lon + dlon > 180:
        return within
    return and_(INCIDENT.c.geom.op("&&")(func.ST_Expand(point, dlon, dlat)), within)


def _where(query: Select[Any], f: IncidentFilter) -> Select[Any]:
    c = INCIDENT.c
    query = query.where(c.status == f.status)
    if f.bbox is not None:
        query = query.where(in_bbox(c.geom, f.bbox))
    if f.within_wkb is not None:
        zone = func.ST_GeomFromWKB(literal(f.within_wkb), 4326)
        query = query.where(intersects(c.geom, zone))
    if f.near is not None:
        query = query.where(_near(f.near))
    for column, value in (
        (c.category, f.category),
        (c.event_type, f.event_type),
        (c.severity, f.severity),
        (c.verification, f.verification),
        (c.state, f.state),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(c.last_observed_at >= f.since)
    return query


def list_incidents(
    session: Session,
    f: IncidentFilter,
    *,
    after_seq: int | None,
    limit: int,
    visible: IncidentReach = ALL_INCIDENTS,
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` visible incidents in ``updated_seq`` order after ``after_seq``; and
    whether more exist. An incident that changes gets a new ``updated_seq``: it moves to the
    end, so a client paging through sees it again, never misses it."""
    query = _where(select(*_incident_columns()).where(visible.where), f)
    if f.reports is not None:
        holding = _holding(f.reports, visible.members)
        query = query.add_columns(holding.c.matched_reports).join(
            holding, holding.c.incident_id == INCIDENT.c.id
        )
    return page_after(session, query, INCIDENT.c.updated_seq, after_seq, limit)


def _holding(reports: tuple[uuid.UUID, ...], members: EventReach) -> Subquery:
    """Per incident, which of ``reports`` it holds (``matched_reports``). Only reports the caller
    may see count: asking for a report out of reach must not tell which incident it is in,
    even when the incident itself is in reach (the detail view leaves such members out too)."""
    e, r = EVENT.c, REPORT.c
    return (
        select(r.incident_id, func.array_agg(r.event_id).label("matched_reports"))
        .select_from(REPORT.join(EVENT, e.event_id == r.event_id))
        .where(r.event_id.in_(reports), members.where)
        .group_by(r.incident_id)
        .subquery("holding")
    )


@dataclass(frozen=True)
class IncidentDetail:
    incident: Row[Any]
    reports: Sequence[Row[Any]]  # the member events the caller may see, by observed_at
    timeline: Sequence[Row[Any, Any, Any, Any]]  # (at, what, event_id, detail) by at, then order


def get_incident(
    session: Session, incident_id: uuid.UUID, visible: IncidentReach = ALL_INCIDENTS
) -> IncidentDetail | None:
    """The incident with its provenance, if it exists and is visible (out of reach looks the
    same as absent)."""
    in_utc(session)
    row = session.execute(
        select(*_incident_columns()).where(INCIDENT.c.id == incident_id, visible.where)
    ).first()
    if row is None:
        return None
    e, r = EVENT.c, REPORT.c
    members = visible.members
    report_columns = [
        r.event_id,
        e.community_id,
        e.source_system,
        e.source_connector,
        members.reporter.label("reporter"),
        e.observed_at,
        e.kind,
        e.event_type,
        r.cancelled,
        r.pinned,
    ]
    reports = session.execute(
        select(*report_columns)
        .select_from(REPORT.join(EVENT, e.event_id == r.event_id))
        .where(r.incident_id == incident_id, members.where)
        .order_by(e.observed_at, r.event_id)
    ).all()
    return IncidentDetail(row, reports, _timeline(session, incident_id, members))


def _timeline(
    session: Session, incident_id: uuid.UUID, members: EventReach
) -> Sequence[Row[Any, Any, Any, Any]]:
    """What happened, in order: fusion's entries, and a "report_joined" per member at its
    observed time (derived from the membership: fusion does not write a row per join). An
    entry about an event out of the caller's reach keeps its place, without the event id."""
    e, r, t = EVENT.c, REPORT.c, TIMELINE.c
    written = (
        select(
            t.at,
            t.what,
            e.event_id,
            cast(t.detail, Text).label("detail"),
            literal(1).label("rank"),
            t.id.label("id"),
        )
        .select_from(TIMELINE.outerjoin(EVENT, and_(e.event_id == t.event_id, members.where)))
        .where(t.incident_id == incident_id)
    )
    joined = (
        select(
            e.observed_at.label("at"),
            literal("report_joined").label("what"),
            case((members.where, e.event_id), else_=None).label("event_id"),
            literal("{}").label("detail"),
            literal(0).label("rank"),
            literal(0).label("id"),
        )
        .select_from(REPORT.join(EVENT, e.event_id == r.event_id))
        .where(r.incident_id == incident_id)
    )
    both = union_all(written, joined).subquery()
    return session.execute(
        select(both.c.at, both.c.what, both.c.event_id, both.c.detail).order_by(
            both.c.at, both.c.rank, both.c.id, both.c.event_id
        )
    ).all()


def merged_into(
    session: Session, alias: uuid.UUID, visible: IncidentReach = ALL_INCIDENTS
) -> uuid.UUID | None:
    """The visible incident that an id merged away lives on in, if any."""
    a = ALIAS.c
    query = (
        select(a.incident_id)
        .select_from(ALIAS.join(INCIDENT, INCIDENT.c.id == a.incident_id))
        .where(a.alias == alias, visible.where)
    )
    found: uuid.UUID | None = session.execute(query).scalar_one_or_none()
    return found
