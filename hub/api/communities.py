"""``/v1/communities``: the community polygons with their activity and a ``silent`` flag."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request, Security
from pydantic import BaseModel, Field
from sqlalchemy import Row

from hub.api.deps import Access, SettingsDep, get_access
from hub.api.errors import problem_responses
from hub.api.geojson import (
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
    absolute_url,
    dumps,
    fragment,
    link,
)
from hub.store import queries
from schemas.event import MultiPolygon

router = APIRouter(tags=["communities"])


class CommunityProperties(BaseModel):
    id: str
    name: str
    repaired: bool = Field(description="the imported polygon was invalid and has been repaired")
    events_stored: int
    last_event_at: datetime | None = Field(description="ingest time of the newest event (UTC, Z)")
    last_observed_at: datetime | None = Field(description="newest observed_at (UTC, Z)")
    silent: bool = Field(
        description="no event stored within the quiet period (or ever): "
        "a silent community is often the one in trouble"
    )


class CommunityFeature(FeatureBase):
    id: str
    geometry: MultiPolygon
    properties: CommunityProperties


class CommunityCollection(FeatureCollectionBase):
    features: list[CommunityFeature]
    numberReturned: int
    quiet_period_s: int = Field(description="the quiet period behind the silent flags")


def community_feature(row: Row[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row.id,
        "geometry": fragment(row.geometry),
        "properties": {
            "id": row.id,
            "name": row.name,
            "repaired": row.repaired,
            "events_stored": row.events_stored,
            "last_event_at": row.last_event_at,  # UTC from the store, written with Z
            "last_observed_at": row.last_observed_at,
            "silent": row.silent,
        },
    }


@router.get(
    "/v1/communities",
    name="list_communities",
    summary="Communities as a GeoJSON FeatureCollection of polygons",
    response_class=GeoJSONResponse,
    description="Every principal sees every community's boundary and activity counts (no "
    "event content): a neighbour must know who is around, and who has gone silent.",
    response_model=CommunityCollection,
    responses=problem_responses(401, 403, 429, 500),
)
def list_communities(
    request: Request, settings: SettingsDep, access: Annotated[Access, Security(get_access)]
) -> GeoJSONResponse:
    quiet = settings.community_quiet_period_s
    rows = queries.list_communities(access.session, timedelta(seconds=quiet), access.communities)
    request.state.audit_rows = len(rows)  # for the audit log
    path = request.app.url_path_for("list_communities")
    body = {
        "type": "FeatureCollection",
        "features": [community_feature(r) for r in rows],
        "links": [link("self", absolute_url(request, settings, path))],
        "numberReturned": len(rows),
        "quiet_period_s": quiet,
    }
    return GeoJSONResponse(dumps(body))
