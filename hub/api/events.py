"""``/v1/events``: the fused event log as GeoJSON, filtered and paged by ingest sequence."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from pydantic import BaseModel, Field
from sqlalchemy import Row

from hub.api.deps import Access, SettingsDep, get_access
from hub.api.errors import NotFound, problem_responses
from hub.api.geojson import (
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
    Link,
    feature_item,
    fragment,
)
from hub.api.listing import Listing, list_route, listing
from hub.api.params import (
    BBoxParam,
    CategoryParam,
    CommunityParam,
    EventTypeParam,
    optional_bbox,
    optional_instant,
    since_param,
    until_param,
)
from hub.store import queries
from hub.store.queries import EventFilter
from schemas.event import Category, Certainty, Geometry, Kind, Severity, Status, Urgency

router = APIRouter(tags=["events"])

# Reading the raw reports is part of reading incidents: the same scope.
ReadAccess = Annotated[Access, Security(get_access, scopes=["incidents:read"])]

MAX_LIMIT = 10_000


class EventSource(BaseModel):
    system: str
    connector: str
    reporter: str | None = None


class EventProperties(BaseModel):
    seq: int = Field(description="monotonic ingest sequence; the order of the collection")
    community_id: str
    kind: Kind
    category: Category
    severity: Severity
    urgency: Urgency
    certainty: Certainty
    status: Status
    event_type: str
    observed_at: datetime = Field(description="UTC with Z", examples=["2018-12-01T08:25:00Z"])
    source: EventSource
    properties: dict[str, Any] = Field(description="the event's own, kind-specific properties")
    refs: list[uuid.UUID] = Field(description="event ids this event updates or cancels")
    ingested_at: datetime = Field(description="when the hub stored it (UTC with Z)")
    grid_cell: str | None = Field(
        description="its community's own unit grid cell (`<community_id>/<code>`), else the "
        "generated H3 cell (`h3/<index>`); null for events stored before grids existed",
        examples=["Mission/M-07", "h3/892830828cbffff"],
    )


class EventFeature(FeatureBase):
    id: uuid.UUID = Field(description="the event_id")
    geometry: Geometry
    properties: EventProperties
    links: list[Link] | None = None


class EventCollection(FeatureCollectionBase):
    features: list[EventFeature]
    numberReturned: int


# --- parameters -----------------------------------------------------------------------------


def event_filter(
    bbox: BBoxParam = None,
    community: CommunityParam = None,
    category: CategoryParam = None,
    event_type: EventTypeParam = None,
    since: Annotated[str | None, since_param("observed_at")] = None,
    until: Annotated[str | None, until_param("observed_at")] = None,
) -> EventFilter:
    return EventFilter(
        bbox=optional_bbox(bbox),
        community=community,
        category=category,
        event_type=event_type,
        since=optional_instant("since", since),
        until=optional_instant("until", until),
    )


# --- output ---------------------------------------------------------------------------------


def event_feature(row: Row[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row.event_id,
        "geometry": fragment(row.geometry),
        "properties": {
            "seq": row.seq,
            "community_id": row.community_id,
            "kind": row.kind,
            "category": row.category,
            "severity": row.severity,
            "urgency": row.urgency,
            "certainty": row.certainty,
            "status": row.status,
            "event_type": row.event_type,
            # datetimes in UTC from the store; dumps() writes them with Z
            "observed_at": row.observed_at,
            "source": {
                "system": row.source_system,
                "connector": row.source_connector,
                "reporter": row.reporter,
            },
            "properties": fragment(row.properties),
            "refs": fragment(row.refs),
            "ingested_at": row.ingested_at,
            "grid_cell": row.grid_cell,
        },
    }


# --- endpoints ------------------------------------------------------------------------------


@list_route(
    router,
    "/v1/events",
    name="list_events",
    summary="Events as a GeoJSON FeatureCollection",
    description="Ordered by ingest sequence (`seq`). Follow the `next` link to page; it keeps "
    "the filters. Filters combine with AND, and with the caller's reach: only events the "
    "principal may see are listed, and `source.reporter` is null where identities are hidden.",
    model=EventCollection,
)
def list_events(
    access: ReadAccess,
    filters: Annotated[EventFilter, Depends(event_filter)],
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> GeoJSONResponse:
    query = partial(queries.list_events, access.session, filters, visible=access.events)
    return pages.features("list_events", query, lambda row: row.seq, event_feature)


@router.get(
    "/v1/events/{event_id}",
    name="get_event",
    summary="One event as a GeoJSON Feature",
    description="An event out of the caller's reach answers 404, as if it did not exist.",
    response_class=GeoJSONResponse,
    response_model=EventFeature,
    responses=problem_responses(400, 401, 403, 404, 429, 500),
)
def get_event(
    request: Request,
    settings: SettingsDep,
    access: ReadAccess,
    event_id: Annotated[uuid.UUID, Path(description="the event_id")],
) -> GeoJSONResponse:
    row = queries.get_event(access.session, event_id, access.events)
    if row is None:
        raise NotFound(f"no event {event_id}")
    request.state.audit_rows = 1
    feature = event_feature(row)
    return feature_item(
        request, settings, feature, "list_events", "get_event", event_id=str(event_id)
    )
