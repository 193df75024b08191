"""``/v1/warnings``: the open warning incidents (a sensor crossed a threshold, or an alert was
received) as GeoJSON, with the neighbouring communities each is flagged to.

A warning is an incident (``/v1/incidents``): the same scope, reach, parameters parsed the same
way, features with the incident's properties, paging by update sequence; plus ``neighbours``,
``flagged_to_caller`` and ``level``.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from hub.access.features import warning_feature
from hub.api.events import ReadAccess
from hub.api.geojson import FeatureCollectionBase, GeoJSONResponse
from hub.api.incidents import (
    MAX_LIMIT,
    IncidentFeature,
    IncidentProperties,
)
from hub.api.listing import Listing, list_route, listing
from hub.api.params import (
    BBoxParam,
    StatusParam,
    optional_bbox,
    optional_instant,
    since_param,
    text_param,
)
from hub.store import warning_queries
from hub.store.warning_queries import WarningFilter
from schemas.picture import RaisedLevel

router = APIRouter(tags=["warnings"])


class WarningProperties(IncidentProperties):
    neighbours: list[str] = Field(
        description="the communities it is flagged to: not among its own, with their area "
        "within the neighbour distance (default 2 km, geodesic) of it"
    )
    flagged_to_caller: bool = Field(description="the caller is a community among `neighbours`")
    level: RaisedLevel | None = Field(
        description="the highest threshold level among its sensor warnings the caller may see; "
        "null when it has none (a received alert, not a sensor's crossing)"
    )


class WarningFeature(IncidentFeature):
    properties: WarningProperties


class WarningCollection(FeatureCollectionBase):
    features: list[WarningFeature]
    numberReturned: int


def warning_filter(
    status: StatusParam = "actual",
    bbox: BBoxParam = None,
    since: Annotated[str | None, since_param("last_observed_at")] = None,
    community: Annotated[
        str | None,
        text_param("community id, exact: the warnings in that community or flagged to it"),
    ] = None,
) -> WarningFilter:
    return WarningFilter(
        status=status,
        bbox=optional_bbox(bbox),
        since=optional_instant("since", since),
        community=community,
    )


@list_route(
    router,
    "/v1/warnings",
    name="list_warnings",
    summary="Open warnings as a GeoJSON FeatureCollection",
    description="Open incidents with a warning among their live reports: a sensor reading that "
    "crossed its threshold (`level`: yellow, orange, red), or a received alert. A warning near "
    "a community boundary is flagged to the neighbouring communities (`neighbours`); a "
    "community sees the real warnings flagged to it (`flagged_to_caller`). Ordered by "
    "`updated_seq` like `/v1/incidents`; follow the `next` link to page (it keeps the "
    "filters). Filters combine with AND, and with the caller's reach. `status` defaults to "
    "`actual`: drill warnings are listed only when asked for.",
    model=WarningCollection,
)
def list_warnings(
    access: ReadAccess,
    filters: Annotated[WarningFilter, Depends(warning_filter)],
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> GeoJSONResponse:
    query = partial(warning_queries.list_warnings, access.session, filters, visible=access.warnings)
    principal = access.principal
    caller = principal.community_id if principal.kind == "community" else None
    return pages.features(
        "list_warnings",
        query,
        lambda warning: warning.incident.updated_seq,
        lambda warning: warning_feature(warning, caller),
    )
