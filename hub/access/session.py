"""A database session set up to serve one principal: row-level security and the reach.

Row-level security reads the principal from settings of the transaction
(``set_config('hub.*', ..., true)``; the policies of migrations 0002 and later), so every
transaction of the API role sets them before it reads. :func:`open_reach` does it and gives the
matching :class:`~hub.access.reach.Reach`: a reader (a route, a collection, a stream) gets the
caller's reach with that one call.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.orm import Session

from hub.access.principal import Principal
from hub.access.reach import Reach
from hub.store.queries import neighbour_zone

_SET = text(
    "SELECT set_config('hub.principal_kind', :kind, true),"
    " set_config('hub.subject', :subject, true),"
    " set_config('hub.community_id', :community, true),"
    " set_config('hub.jurisdiction', :jurisdiction, true),"
    " set_config('hub.categories', :categories, true),"
    " set_config('hub.neighbour_zone', :zone, true)"
)


def set_principal(session: Session, principal: Principal, zone_wkb: bytes | None = None) -> None:
    """Make ``principal`` the one the row-level policies see until the transaction ends."""
    session.execute(
        _SET,
        {
            "kind": principal.kind,
            "subject": principal.subject,
            "community": principal.community_id or "",
            "jurisdiction": (principal.jurisdiction_wkb or b"").hex(),
            "categories": ",".join(sorted(principal.categories or ())),
            "zone": (zone_wkb or b"").hex(),
        },
    )


class ZoneCache:
    """Communities' neighbour zones (boundary + distance, geodesic), cached: computing one
    buffers a polygon on the spheroid, which would cost every request of a community ~ms."""

    def __init__(self, max_age_s: float = 300.0) -> None:
        self.max_age_s = max_age_s
        self._zones: dict[tuple[str, float], tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def cached(self, community_id: str, distance_m: float) -> tuple[bool, bytes | None]:
        """(found, zone); a zone of None means the community is unknown."""
        with self._lock:
            hit = self._zones.get((community_id, distance_m))
        if hit is None or time.monotonic() - hit[0] >= self.max_age_s:
            return False, None
        return True, hit[1]

    def put(self, community_id: str, distance_m: float, zone: bytes | None) -> None:
        with self._lock:
            self._zones[(community_id, distance_m)] = (time.monotonic(), zone)


def _zone(
    session: Session, principal: Principal, zones: ZoneCache, distance_m: float
) -> bytes | None:
    """A community's neighbour zone (None for every other kind), from ``zones`` or computed."""
    if principal.kind != "community" or principal.community_id is None:
        return None
    found, zone = zones.cached(principal.community_id, distance_m)
    if not found:
        set_principal(session, principal)  # row-level security shows the community table now
        zone = neighbour_zone(session, principal.community_id, distance_m)
        zones.put(principal.community_id, distance_m, zone)
    return zone


def open_reach(
    session: Session, principal: Principal, zones: ZoneCache, distance_m: float
) -> Reach:
    """``principal``'s reach, with row-level security set for it on ``session``'s transaction;
    ``distance_m``: how far beyond its boundary a community sees its neighbours."""
    zone = _zone(session, principal, zones, distance_m)
    set_principal(session, principal, zone)
    return Reach(principal, zone)
