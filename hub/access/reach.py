"""A principal's reach: what it may see of each resource, compiled to SQL (never a filter in
Python afterwards). The store puts these predicates into its queries (``hub.store.reach``), so
rows and identities out of reach never leave PostgreSQL; row-level security (the principal set
by ``hub.access.session``) is the second wall, with the same rules.

Events (the reporter projected as NULL where identities are hidden):

- ``admin``: everything.
- ``analyst``: the whole region, read-only, no reporter identities.
- ``department``: everything inside its jurisdiction polygon, optionally limited to categories.
- ``community``: everything of its own community; of other communities, only what lies within
  its neighbour zone (its boundary grown by the neighbour distance, default 2 km), without
  their reporters.

Incidents (and warnings, which are incidents) follow the same rules on the incident's geometry
(its point or the hull of its members) and category; a community sees the incidents its own
community is part of (``:community = ANY(incident.communities)``) and, of the others, the
*shareable* ones whose geometry lies within its neighbour zone. Shareable is
``status = 'actual'``: another community's drills and tests are its own business (refuted
rumours are shared: neighbours should stop spreading them). An incident's member events are
read through the events' reach, so its provenance shows a reporter exactly where
``/v1/events`` does.

Risk per grid cell: the rules of incidents (the row-level policy ``hub_sees_place``), without
categories and reporters to hide: risk is aggregated.

Resource balances (``resource_balance_shared``): ``admin`` every balance, drills included; an
``analyst`` every community's real (``actual``) balances; a ``department`` the real balances of
the communities its jurisdiction touches; a ``community`` every community's real balances
(mutual aid is shared), and its own drills.

Communities: every principal sees every community's boundary and activity counts: a neighbour
must know who is around, and who has gone silent.

Spatial tests are written as ``geom && zone AND ST_Intersects(geom, zone)`` against a bound
geometry (the jurisdiction, or the community's neighbour zone), so the GiST indexes serve them.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
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

from hub.access.principal import Principal
from hub.store.incident_queries import INCIDENT
from hub.store.queries import COMMUNITY, EVENT, intersects
from hub.store.reach import ALL_ROWS, EventReach, IncidentReach, RowReach
from hub.store.resource_queries import BALANCE
from hub.store.risk_queries import RISK
from schemas.picture import SHARED_STATUS


def _within(area_wkb: bytes, geom: Column[Any]) -> ColumnElement[bool]:
    return intersects(geom, func.ST_GeomFromWKB(literal(area_wkb), 4326))


def _by_place(
    principal: Principal,
    zone_wkb: bytes | None,
    geom: Column[Any],
    own: ColumnElement[bool],
    shareable: ColumnElement[bool] | None,
    category: Column[Any] | None,
) -> ColumnElement[bool]:
    """The rule of every resource bound to a place: everything (admin, analyst); a department's
    jurisdiction, narrowed to its categories where the rows have one; a community's own rows
    (``own``, a predicate on its community id) and its neighbours' within ``zone_wkb`` (those
    that are ``shareable``, where not all are)."""
    if principal.kind in ("admin", "analyst"):
        return true()
    if principal.kind == "department" and principal.jurisdiction_wkb is not None:
        where = _within(principal.jurisdiction_wkb, geom)
        if category is not None and principal.categories is not None:
            where = and_(where, category.in_(sorted(principal.categories)))
        return where
    if principal.kind == "community" and principal.community_id is not None:
        if zone_wkb is None:
            return own
        near = _within(zone_wkb, geom)
        return or_(own, near if shareable is None else and_(shareable, near))
    return false()  # an unknown kind, or one without its area, sees nothing


def event_reach(principal: Principal, zone_wkb: bytes | None = None) -> EventReach:
    """Event rows and reporter projection for ``principal``; ``zone_wkb`` is a community's
    neighbour zone (``hub.store.queries.neighbour_zone``)."""
    c = EVENT.c
    own = c.community_id == principal.community_id
    where = _by_place(principal, zone_wkb, c.geom, own, None, c.category)
    reporter: ColumnElement[Any] = null()
    department = principal.kind == "department" and principal.jurisdiction_wkb is not None
    if principal.kind == "admin" or department:
        reporter = c.reporter
    elif principal.kind == "community" and principal.community_id is not None:
        reporter = case((own, c.reporter), else_=null())
    return EventReach(where, reporter)


def incident_reach(principal: Principal, zone_wkb: bytes | None = None) -> IncidentReach:
    """Incident rows for ``principal`` (the events' rules on the incident's geometry and
    category; of its neighbours', a community sees the shareable ones), and the events' reach
    for the incidents' member reports."""
    c = INCIDENT.c
    own = literal(principal.community_id) == any_(c.communities)
    shareable = c.status == SHARED_STATUS
    where = _by_place(principal, zone_wkb, c.geom, own, shareable, c.category)
    return IncidentReach(where, event_reach(principal, zone_wkb))


def risk_reach(principal: Principal, zone_wkb: bytes | None = None) -> RowReach:
    """The risk cells ``principal`` may see (the incidents' rules, without categories)."""
    c = RISK.c
    own = c.community_id == principal.community_id
    shareable = c.status == SHARED_STATUS
    return RowReach(_by_place(principal, zone_wkb, c.geom, own, shareable, None))


def resource_reach(principal: Principal) -> RowReach:
    """The resource balances ``principal`` may see: mutual aid is shared, drills are not."""
    c = BALANCE.c
    shared = c.status == SHARED_STATUS
    if principal.kind == "admin":
        return ALL_ROWS
    if principal.kind == "analyst":
        return RowReach(shared)
    if principal.kind == "department" and principal.jurisdiction_wkb is not None:
        served = select(COMMUNITY.c.id).where(_within(principal.jurisdiction_wkb, COMMUNITY.c.geom))
        return RowReach(and_(shared, c.community_id.in_(served)))
    if principal.kind == "community" and principal.community_id is not None:
        return RowReach(or_(shared, c.community_id == principal.community_id))
    return RowReach(false())  # an unknown kind, or one without its area, sees nothing


def community_reach(principal: Principal) -> RowReach:
    """Every community, for every principal (the row-level policy asks only for one)."""
    return ALL_ROWS


class Reach:
    """Everything ``principal`` may see, one reach per resource, each compiled on first use.

    ``zone_wkb``: a community's neighbour zone; ``hub.access.session.open_reach`` finds it and
    sets row-level security to match on the session that will run the queries.
    """

    def __init__(self, principal: Principal, zone_wkb: bytes | None = None) -> None:
        self.principal = principal
        self.zone_wkb = zone_wkb

    @cached_property
    def events(self) -> EventReach:
        return event_reach(self.principal, self.zone_wkb)

    @cached_property
    def incidents(self) -> IncidentReach:
        return incident_reach(self.principal, self.zone_wkb)

    @property
    def warnings(self) -> IncidentReach:
        return self.incidents  # a warning is an incident that fusion flagged

    @cached_property
    def risk(self) -> RowReach:
        return risk_reach(self.principal, self.zone_wkb)

    @cached_property
    def resources(self) -> RowReach:
        return resource_reach(self.principal)

    @cached_property
    def communities(self) -> RowReach:
        return community_reach(self.principal)
