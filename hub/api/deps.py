"""FastAPI dependencies, as plain functions: the app's settings, and a caller's access.

A route that reads the hub's data takes an :class:`Access`: the verified principal, a database
session as the API role with that principal set for row-level security, and the principal's
reach of each resource to put into its queries (``hub.access``). One dependency chain per
route, so the token is verified once::

    def list_events(access: Annotated[Access, Security(get_access, scopes=["incidents:read"])]):
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hub.access.reach import Reach
from hub.access.session import open_reach
from hub.auth.deps import PrincipalDep
from hub.settings import Settings
from hub.store.db import session_scope


def get_app_settings(request: Request) -> Settings:
    # The settings the app was built with (not get_settings()), so tests can run several apps.
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


class Access(Reach):
    """The caller's reach of every resource (``access.events``, ``access.incidents``,
    ``access.warnings``, ``access.risk``, ``access.resources``, ``access.communities``) and a
    session as the API role with the principal set for row-level security."""

    def __init__(self, reach: Reach, session: Session) -> None:
        super().__init__(reach.principal, reach.zone_wkb)
        self.session = session


def get_access(
    request: Request, settings: SettingsDep, principal: PrincipalDep
) -> Iterator[Access]:
    """A session as the API role, the principal set for this transaction, and its reach."""
    with session_scope(settings, api=True) as session:
        zones = request.app.state.zones
        reach = open_reach(session, principal, zones, settings.neighbour_distance_m)
        yield Access(reach, session)
