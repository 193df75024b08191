"""The read side of the store, as the API needs it.

SQLAlchemy Core over the SQLModel tables, so every value is a bound parameter. Geometries and
the events' own properties come back as JSON *text* (``ST_AsGeoJSON``, ``jsonb::text``): the API
splices them into its output without decoding them. Timestamps come back in UTC (the session
time zone is set per transaction), ready to be written with ``Z``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Row,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store import models  # noqa: F401  (registers the tables in SQLModel.metadata)
from hub.store.reach import ALL_EVENTS, ALL_ROWS, EventReach, RowReach

EVENT: Table = SQLModel.metadata.tables["event"]
COMMUNITY: Table = SQLModel.metadata.tables["community"]
STATS: Table = SQLModel.metadata.tables["community_stats"]


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


@dataclass(frozen=True)
class EventFilter:
    """What ``GET /v1/events`` may filter on; ``None`` means no condition."""

    bbox: BBox | None = None
    community: str | None = None
    category: str | None = None
    event_type: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive: consecutive windows never count an event twice


def _event_columns(reporter: ColumnElement[Any]) -> list[Any]:
    c = EVENT.c
    return [
        c.seq,
        c.event_id,
        c.community_id,
        c.kind,
        c.category,
        c.severity,
        c.urgency,
        c.certainty,
        c.status,
        c.event_type,
        c.observed_at,
        func.ST_AsGeoJSON(c.geom).label("geometry"),
        c.source_system,
        c.source_connector,
        reporter.label("reporter"),
        cast(c.properties, Text).label("properties"),
        cast(func.to_json(c.refs), Text).label("refs"),  # JSON text: no array decoding per row
        c.ingested_at,
        c.grid_cell,
    ]


def in_utc(session: Session) -> None:
    # timestamptz values arrive in the session's time zone; UTC lets the API write them as they
    # are (orjson, with Z) instead of converting 20,000 datetimes per page in Python.
    session.execute(text("SET LOCAL TIME ZONE 'UTC'"))


def intersects(geom: Any, zone: Any) -> ColumnElement[bool]:
    """``geom`` meets ``zone``: ``&&`` (the GiST-indexed box test), then ST_Intersects (the real
    shape). Every spatial filter and policy predicate of the read side goes through here."""
    return and_(geom.op("&&")(zone), func.ST_Intersects(geom, zone))


def in_bbox(geom: Any, b: BBox) -> ColumnElement[bool]:
    """``geom`` meets the WGS84 box ``b``."""
    envelope = func.ST_MakeEnvelope(b.min_lon, b.min_lat, b.max_lon, b.max_lat, 4326)
    return intersects(geom, envelope)


def page_after(
    session: Session, query: Select[Any], seq: Any, after_seq: int | None, limit: int
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` rows of ``query`` in ``seq`` order after ``after_seq`` (the cursor of a
    collection), in UTC; and whether more exist."""
    if after_seq is not None:
        query = query.where(seq > after_seq)
    in_utc(session)
    # One row more than asked tells whether a next page exists without a count(*).
    rows = session.execute(query.order_by(seq).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def _where(query: Select[Any], f: EventFilter) -> Select[Any]:
    c = EVENT.c
    if f.bbox is not None:
        query = query.where(in_bbox(c.geom, f.bbox))
    if f.community is not None:
        query = query.where(c.community_id == f.community)
    if f.category is not None:
        query = query.where(c.category == f.category)
    if f.event_type is not None:
        query = query.where(c.event_type == f.event_type)
    if f.since is not None:
        query = query.where(c.observed_at >= f.since)
    if f.until is not None:
        query = query.where(c.observed_at < f.until)
    return query


def list_events(
    session: Session,
    f: EventFilter,
    *,
    after_seq: int | None,
    limit: int,
    visible: EventReach = ALL_EVENTS,
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` visible events in ``seq`` order after ``after_seq``; and whether more
    exist."""
    query = _where(select(*_event_columns(visible.reporter)).where(visible.where), f)
    return page_after(session, query, EVENT.c.seq, after_seq, limit)


def get_event(
    session: Session, event_id: uuid.UUID, visible: EventReach = ALL_EVENTS
) -> Row[Any] | None:
    """The event, if it exists and is visible (out of reach looks the same as absent)."""
    query = select(*_event_columns(visible.reporter)).where(
        EVENT.c.event_id == event_id, visible.where
    )
    in_utc(session)
    return session.execute(query).first()


def list_communities(
    session: Session, quiet_period: timedelta, visible: RowReach = ALL_ROWS
) -> Sequence[Row[Any]]:
    """Every visible community with its activity (from ``community_stats``; the event log is
    not counted).

    ``silent`` is computed against the database clock, the same clock that stamped
    ``last_event_at``, so an API host with a skewed clock cannot flip it.
    """
    s = STATS.c
    quiet = bindparam("quiet", quiet_period, type_=Interval())
    silent = func.coalesce(s.last_event_at < func.now() - quiet, True)
    query = (
        select(
            COMMUNITY.c.id,
            COMMUNITY.c.name,
            COMMUNITY.c.repaired,
            func.ST_AsGeoJSON(COMMUNITY.c.geom).label("geometry"),
            func.coalesce(s.events_stored, 0).label("events_stored"),
            s.last_event_at,
            s.last_observed_at,
            silent.label("silent"),
        )
        .select_from(COMMUNITY.outerjoin(STATS, s.community_id == COMMUNITY.c.id))
        .where(visible.where)
        .order_by(COMMUNITY.c.id)
    )
    in_utc(session)
    return session.execute(query).all()


def neighbour_zone(session: Session, community_id: str, distance_m: float) -> bytes | None:
    """The community's boundary grown by ``distance_m`` metres (geodesic), as WKB; None if the
    community is unknown (its principal then sees nothing but its own rows, which are none)."""
    grown = func.ST_Buffer(func.geography(COMMUNITY.c.geom), distance_m)
    query = select(func.ST_AsBinary(func.geometry(grown))).where(COMMUNITY.c.id == community_id)
    value = session.execute(query).scalar_one_or_none()
    return bytes(value) if value is not None else None


def database_answers(session: Session) -> bool:
    return session.execute(text("SELECT 1")).scalar_one() == 1
