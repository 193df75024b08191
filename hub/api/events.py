"""``/v1/events``: the fused event log as GeoJSON, filtered and paged by ingest sequence."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from pydantic import BaseModel, Field
from sqlalchemy import Row

from hub.api.deps import Access, SettingsDep, get_access
from hub.api.errors import BadRequest, NotFound, problem_responses
from hub.api.geojson import (
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
    Link,
    absolute_url,
    dumps,
    feature_page,
    fragment,
    link,
)
from hub.store import queries
from hub.store.queries import BBox, EventFilter
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

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def parse_rfc3339(name: str, value: str) -> datetime:
    """An RFC 3339 timestamp with an explicit offset; anything else is a 400."""
    if not _RFC3339.fullmatch(value):
        hint = ""
        if re.search(r"\d \d{2}:\d{2}$", value):  # an unencoded '+' arrives as a space
            hint = " (a '+' in a URL must be encoded as %2B)"
        raise BadRequest(
            f"{name}: {value!r} is not an RFC 3339 timestamp with an offset, "
            f"e.g. 2018-12-01T08:00:00Z or 2018-12-01T00:00:00-08:00{hint}"
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:  # well-formed but impossible, e.g. month 13
        raise BadRequest(f"{name}: {value!r} is not a valid date-time ({exc})") from exc


def parse_bbox(value: str) -> BBox:
    parts = value.split(",")
    if len(parts) != 4:
        raise BadRequest(f"bbox: expected 4 numbers minLon,minLat,maxLon,maxLat, got {len(parts)}")
    try:
        nums = [float(p) for p in parts]
    except ValueError as exc:
        raise BadRequest(f"bbox: {value!r} holds a value that is not a number") from exc
    if not all(math.isfinite(n) for n in nums):
        raise BadRequest("bbox: values must be finite numbers")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise BadRequest("bbox: longitudes must be within [-180, 180]")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise BadRequest("bbox: latitudes must be within [-90, 90]")
    if min_lon > max_lon or min_lat > max_lat:
        raise BadRequest(
            "bbox: minimum greater than maximum (boxes across the antimeridian are not supported)"
        )
    return BBox(min_lon, min_lat, max_lon, max_lat)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The ``seq`` after which the next page starts; a cursor we did not issue is a 400."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("cursor: malformed; use the href of a 'next' link as it is") from exc
    match = re.fullmatch(rb"s(\d{1,18})", raw)
    if match is None:
        raise BadRequest("cursor: malformed; use the href of a 'next' link as it is")
    return int(match.group(1))


@dataclass(frozen=True)
class Page:
    """A collection's ``limit`` and ``cursor`` parameters, the cursor decoded (``after``)."""

    limit: int
    cursor: str | None  # as sent: the self link repeats it
    after: int | None


def paging(max_limit: int) -> Callable[..., Page]:
    """The dependency of a collection route paged by cursor, pages of at most ``max_limit``."""

    # Defaults rather than Annotated hints: a hint naming ``max_limit`` would be a string
    # (postponed annotations) that FastAPI cannot resolve in this closure.
    def page(
        limit: int = Query(100, ge=1, le=max_limit, description="page size"),
        cursor: str | None = Query(None, description="opaque; from a next link"),
    ) -> Page:
        return Page(limit, cursor, decode_cursor(cursor) if cursor is not None else None)

    return page


# PostgreSQL text cannot hold NUL: refused as a bad parameter, not sent to become a 500.
NO_NUL = r"^[^\x00]*$"


def text_param(description: str) -> Any:
    return Query(description=description, min_length=1, max_length=200, pattern=NO_NUL)


def event_filter(
    bbox: Annotated[
        str | None,
        Query(
            description="minLon,minLat,maxLon,maxLat (WGS84); events whose geometry intersects it",
            examples=["-122.42,37.77,-122.40,37.79"],
        ),
    ] = None,
    community: Annotated[str | None, text_param("community id, exact; URL-encoded")] = None,
    category: Annotated[str | None, text_param("CAP category, e.g. Fire")] = None,
    event_type: Annotated[str | None, text_param("e.g. fire")] = None,
    since: Annotated[
        str | None,
        Query(
            description="observed_at >= since; RFC 3339 with an offset",
            examples=["2018-12-01T00:00:00-08:00"],
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="observed_at < until (exclusive); RFC 3339 with an offset",
            examples=["2018-12-02T00:00:00Z"],
        ),
    ] = None,
) -> EventFilter:
    return EventFilter(
        bbox=parse_bbox(bbox) if bbox is not None else None,
        community=community,
        category=category,
        event_type=event_type,
        since=parse_rfc3339("since", since) if since is not None else None,
        until=parse_rfc3339("until", until) if until is not None else None,
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


@router.get(
    "/v1/events",
    name="list_events",
    summary="Events as a GeoJSON FeatureCollection",
    description="Ordered by ingest sequence (`seq`). Follow the `next` link to page; it keeps "
    "the filters. Filters combine with AND, and with the caller's reach: only events the "
    "principal may see are listed, and `source.reporter` is null where identities are hidden.",
    response_class=GeoJSONResponse,
    response_model=EventCollection,
    responses=problem_responses(400, 401, 403, 429, 500),
)
def list_events(
    request: Request,
    settings: SettingsDep,
    access: ReadAccess,
    filters: Annotated[EventFilter, Depends(event_filter)],
    page: Page = Depends(paging(MAX_LIMIT)),
) -> GeoJSONResponse:
    rows, more = queries.list_events(
        access.session, filters, after_seq=page.after, limit=page.limit, visible=access.events
    )
    next_cursor = encode_cursor(rows[-1].seq) if more else None
    features = [event_feature(r) for r in rows]
    return feature_page(request, settings, "list_events", features, page.cursor, next_cursor)


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
    app = request.app
    here = app.url_path_for("get_event", event_id=str(event_id))
    feature["links"] = [
        link("self", absolute_url(request, settings, here)),
        link(
            "collection", absolute_url(request, settings, request.app.url_path_for("list_events"))
        ),
    ]
    return GeoJSONResponse(dumps(feature))
