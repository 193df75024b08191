"""``/v1/risk``: the risk of the grid cells as GeoJSON (each cell's polygon, score, four-colour
level), filtered, paged by update sequence.

Conventions are those of ``/v1/events`` and ``/v1/incidents``: parameters parsed by the same
helpers, problem+json on bad input, a ``next`` link that keeps the filters, the caller's reach
compiled into the query (``access.risk``, from ``hub.access``; row-level security is the
second wall).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Security
from pydantic import BaseModel, Field

from hub.access.features import risk_feature
from hub.api.deps import Access, get_access
from hub.api.geojson import (
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
)
from hub.api.listing import Listing, by_updated_seq, list_route, listing
from hub.api.params import (
    BBoxParam,
    CommunityParam,
    StatusParam,
    optional_bbox,
)
from hub.store import risk_queries
from hub.store.risk_queries import RiskFilter
from schemas.event import MultiPolygon, Status
from schemas.picture import RiskLevel

router = APIRouter(tags=["risk"])

RiskAccess = Annotated[Access, Security(get_access, scopes=["risk:read"])]

MAX_LIMIT = 10_000  # a city has a few thousand cells: one page can hold them all


class RiskProperties(BaseModel):
    status: Status = Field(description="the picture: actual, or a drill (exercise, test)")
    grid_cell: str = Field(
        description="`<community_id>/<code>` (a community's own unit grid) or `h3/<index>`",
        examples=["Mission/M-07", "h3/892830828cbffff"],
    )
    community_id: str | None = Field(
        description="the cell's community: its owner, or for an H3 cell the community most of "
        "its reports come from"
    )
    score: float = Field(
        description="the sum of its open incidents' weights (severity x certainty x "
        "verification, halved every half-life of the event type), rounded to 2 decimals"
    )
    level: RiskLevel = Field(
        description="four colours; a level falls only well below its threshold"
    )
    level_since: datetime = Field(description="when the cell reached its level (picture time)")
    incidents: int = Field(description="the open incidents that count in the cell")
    as_of: datetime = Field(
        description="the picture time the score is computed for (the latest observed_at fused)"
    )
    updated_seq: int = Field(description="grows whenever the cell is re-scored; the order")


class RiskFeature(FeatureBase):
    id: str = Field(description="the grid cell")
    geometry: MultiPolygon = Field(description="the cell's polygon")
    properties: RiskProperties


class RiskCollection(FeatureCollectionBase):
    features: list[RiskFeature]
    numberReturned: int


@list_route(
    router,
    "/v1/risk",
    name="list_risk",
    summary="Risk per grid cell as a GeoJSON FeatureCollection",
    description="Each grid cell with open incidents, as its polygon with a score and a level "
    "(blue, yellow, orange, red). Scores decay on the picture's own clock (event time), and a "
    "level falls only when the score is well below its threshold (hysteresis), so the map "
    "does not flicker. Blue cells are left out unless `min_level=blue`. Ordered by "
    "`updated_seq`, which grows whenever a cell is re-scored: a cell that changes while a "
    "client pages moves to the end, so it is seen again, never skipped. Follow the `next` "
    "link to page; it keeps the filters. A community sees its own cells and the real "
    "(`actual`) risk near its boundary; a department its jurisdiction; an analyst everything. "
    "`status` defaults to `actual`: drills (`exercise`, `test`) have a picture of their own.",
    model=RiskCollection,
)
def list_risk(
    access: RiskAccess,
    status: StatusParam = "actual",
    bbox: BBoxParam = None,
    community: CommunityParam = None,
    min_level: Annotated[
        RiskLevel, Query(description="the lowest level listed; blue lists every stored cell")
    ] = "yellow",
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> GeoJSONResponse:
    filters = RiskFilter(
        status=status,
        bbox=optional_bbox(bbox),
        community=community,
        min_level=min_level,
    )
    query = partial(risk_queries.list_risk_cells, access.session, filters, visible=access.risk)
    return pages.features("list_risk", query, by_updated_seq, risk_feature)
