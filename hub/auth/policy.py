"""What a principal may see, compiled to SQL predicates (never a filter in Python afterwards).

The API adds ``EventPolicy.where`` to its query and selects ``EventPolicy.reporter`` in place of
the reporter column, so rows and identities out of reach never leave PostgreSQL:

- ``admin``: everything.
- ``analyst``: the whole region, read-only, no reporter identities.
- ``department``: everything inside its jurisdiction polygon, optionally limited to categories.
- ``community``: everything of its own community; of other communities, only what lies within
  the neighbour distance of its boundary (default 2 km), without their reporters.

Incidents (``incident_policy``) follow the same rules on the incident's geometry (its point or
the hull of its members) and category; a community sees the incidents its own community is part
of (``:community = ANY(incident.communities)``) and, of the others, the *shareable* ones whose
geometry lies within its neighbour zone. Shareable is ``status = 'actual'``: another community's
drills and tests are its own business (refuted rumours are shared: neighbours should stop
spreading them). An incident's member events are read through the event policy, so its
provenance shows a reporter exactly where ``/v1/events`` does.

Spatial tests are written as ``geom && zone AND ST_Intersects(geom, zone)`` against a bound
geometry (the jurisdiction, or the community's boundary buffered on the spheroid), so the GiST
indexes on ``event.geom`` and ``incident.geom`` serve them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Table,
    and_,
    any_,
    case,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.auth.principal import Principal
from hub.store import models  # noqa: F401  (registers the tables in SQLModel.metadata)
from hub.store.incident_queries import IncidentVisibility as IncidentPolicy
from hub.store.queries import Visibility as EventPolicy
from hub.store.queries import intersects
from schemas.picture import SHARED_STATUS

EVENT: Table = SQLModel.metadata.tables["event"]
COMMUNITY: Table = SQLModel.metadata.tables["community"]
INCIDENT: Table = SQLModel.metadata.tables["incident"]


def _within(zone_wkb: bytes, geom: Column[Any] = EVENT.c.geom) -> ColumnElement[bool]:
    return intersects(geom, func.ST_GeomFromWKB(literal(zone_wkb), 4326))


def neighbour_zone(session: Session, community_id: str, distance_m: float) -> bytes | None:
    """The community's boundary grown by ``distance_m`` metres (geodesic), as WKB; None if the
    community is unknown (its principal then sees nothing but its own rows, which are none)."""
    grown = func.ST_Buffer(func.geography(COMMUNITY.c.geom), distance_m)
    query = select(func.ST_AsBinary(func.geometry(grown))).where(COMMUNITY.c.id == community_id)
    value = session.execute(query).scalar_one_or_none()
    return bytes(value) if value is not None else None


def event_policy(principal: Principal, zone_wkb: bytes | None = None) -> EventPolicy:
    """Rows and reporter projection for ``principal``; ``zone_wkb`` is the community's
    ``neighbour_zone`` (communities only)."""
    c = EVENT.c
    if principal.kind == "admin":
        return EventPolicy(true(), c.reporter)
    if principal.kind == "analyst":
        return EventPolicy(true(), null())
    if principal.kind == "department":
        if principal.jurisdiction_wkb is None:
            return EventPolicy(false(), null())
        where = _within(principal.jurisdiction_wkb)
        if principal.categories is not None:
            where = and_(where, c.category.in_(sorted(principal.categories)))
        return EventPolicy(where, c.reporter)
    if principal.kind == "community" and principal.community_id is not None:
        own = c.community_id == principal.community_id
        where = or_(own, _within(zone_wkb)) if zone_wkb is not None else own
        return EventPolicy(where, case((own, c.reporter), else_=null()))
    return EventPolicy(false(), null())  # an unknown kind sees nothing


def incident_policy(principal: Principal, zone_wkb: bytes | None = None) -> IncidentPolicy:
    """Incident rows for ``principal`` (the rules of ``event_policy`` on the incident's geometry
    and category; for a community, its own incidents and its neighbours' shareable ones within
    ``zone_wkb``), and its event policy for the incidents' member reports."""
    members = event_policy(principal, zone_wkb)
    c = INCIDENT.c
    where: ColumnElement[bool]
    if principal.kind in ("admin", "analyst"):
        where = true()
    elif principal.kind == "department" and principal.jurisdiction_wkb is not None:
        where = _within(principal.jurisdiction_wkb, c.geom)
        if principal.categories is not None:
            where = and_(where, c.category.in_(sorted(principal.categories)))
    elif principal.kind == "community" and principal.community_id is not None:
        own = literal(principal.community_id) == any_(c.communities)
        if zone_wkb is None:
            where = own
        else:
            where = or_(own, and_(c.status == SHARED_STATUS, _within(zone_wkb, c.geom)))
    else:
        where = false()  # an unknown kind, or one without its area, sees nothing
    return IncidentPolicy(where, members)
