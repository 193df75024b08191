"""FastAPI dependencies, as plain functions: the app's settings, and a caller's access.

A route that reads the hub's data takes an :class:`Access`: the verified principal, a database
session as the API role with that principal set for row-level security, and the principal's
policy to put into its queries. One dependency chain per route, so the token is verified once::

    def list_events(access: Annotated[Access, Security(get_access, scopes=["incidents:read"])]):
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hub.auth.deps import PrincipalDep
from hub.auth.policy import (
    EventPolicy,
    IncidentPolicy,
    incident_policy,
    neighbour_zone,
)
from hub.auth.principal import Principal
from hub.settings import Settings
from hub.store.db import session_scope
from hub.store.rls import set_principal


def get_app_settings(request: Request) -> Settings:
    # The settings the app was built with (not get_settings()), so tests can run several apps.
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


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


@dataclass(frozen=True)
class Access:
    principal: Principal
    session: Session
    events: EventPolicy  # rows and reporter projection of the event log
    incidents: IncidentPolicy  # incident rows, and the event policy for their members


def _zone(
    request: Request, session: Session, principal: Principal, settings: Settings
) -> bytes | None:
    if principal.kind != "community" or principal.community_id is None:
        return None
    zones: ZoneCache = request.app.state.zones
    distance = settings.neighbour_distance_m
    found, zone = zones.cached(principal.community_id, distance)
    if not found:
        set_principal(session, principal)  # row-level security shows the community table now
        zone = neighbour_zone(session, principal.community_id, distance)
        zones.put(principal.community_id, distance, zone)
    return zone


def get_access(
    request: Request, settings: SettingsDep, principal: PrincipalDep
) -> Iterator[Access]:
    """A session as the API role, the principal set for this transaction, and its policy."""
    with session_scope(settings, api=True) as session:
        zone = _zone(request, session, principal, settings)
        set_principal(session, principal, zone)
        incidents = incident_policy(principal, zone)  # its members': the event policy
        yield Access(principal, session, incidents.members, incidents)
