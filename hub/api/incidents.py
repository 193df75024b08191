"""``/v1/incidents``: the fused incidents as GeoJSON, filtered, paged by update sequence; one
incident with its provenance (member reports and timeline).

Conventions are those of ``/v1/events`` (``hub.api.events``): the same scope, parameters
parsed the same way, problem+json on bad input, a ``next`` link that keeps the filters, the
caller's reach compiled into the query (``access.incidents``, from ``hub.access``), 404 out
of reach.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Any

import orjson
import shapely
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from shapely.geometry import shape
from sqlalchemy import Row
from starlette.responses import RedirectResponse, Response

from hub.access.features import incident_feature
from hub.api.cap import CAP_RESPONSE, FormatParam, cap_response, wants_cap
from hub.api.deps import SettingsDep
from hub.api.errors import BadRequest, NotFound, problem_responses
from hub.api.events import ReadAccess
from hub.api.geojson import (
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
    Link,
    absolute_url,
    feature_item,
    fragment,
)
from hub.api.listing import Listing, by_updated_seq, list_route, listing
from hub.api.params import (
    NO_NUL,
    BBoxParam,
    CategoryParam,
    EventTypeParam,
    StatusParam,
    optional_bbox,
    optional_instant,
    since_param,
)
from hub.store import incident_queries
from hub.store.incident_queries import IncidentFilter, Near
from schemas.event import (
    Category,
    Certainty,
    Geometry,
    Kind,
    MultiPolygon,
    Polygon,
    Severity,
    Status,
)
from schemas.picture import IncidentState, Verification

router = APIRouter(tags=["incidents"])

MAX_LIMIT = 1_000
MAX_NEAR_RADIUS_M = 50_000.0
# A query area travels in the URL: 8,000 characters (a few hundred vertices) keep the request
# line well inside what servers and proxies accept; simplify a larger area first.
MAX_WITHIN_CHARS = 8_000
# report=: one request answers "which incidents hold these reports" for a client's batch; a
# hundred ids (3.7 kB) stay well inside a request line, and one page of matches holds them all.
MAX_REPORTS = 100
MAX_REPORT_CHARS = MAX_REPORTS * 45  # room for URN or braced forms; the count is checked apart


class IncidentProperties(BaseModel):
    status: Status = Field(description="the picture: actual, or a drill (exercise, test)")
    state: IncidentState
    category: Category = Field(description="the CAP category of its earliest report")
    event_type: str
    severity: Severity = Field(description="the highest credible severity of its reports")
    certainty: Certainty
    verification: Verification
    decided_by: str | None = Field(description="who verified or refuted it")
    decided_at: datetime | None = Field(description="when (UTC with Z)")
    decision_reason: str | None
    sources: int = Field(description="independent sources among its live reports")
    reports: int = Field(description="how many live (not cancelled) reports it has")
    communities: list[str] = Field(description="the communities its reports come from")
    first_observed_at: datetime = Field(description="UTC with Z")
    last_observed_at: datetime = Field(description="UTC with Z")
    updated_seq: int = Field(
        description="grows whenever the incident changes; the order of the collection"
    )


class IncidentFeature(FeatureBase):
    id: uuid.UUID = Field(description="the incident id (its earliest report's seed)")
    geometry: Geometry = Field(description="its report's point, or the hull of its reports")
    properties: IncidentProperties
    links: list[Link] | None = None


class ListedIncident(IncidentFeature):
    matched_reports: list[uuid.UUID] | None = Field(
        None,
        description="only with `report=`: which of the asked-for reports this incident holds "
        "(of those the caller may see); a GeoJSON foreign member",
    )


class IncidentCollection(FeatureCollectionBase):
    features: list[ListedIncident]
    numberReturned: int


class ReportSource(BaseModel):
    system: str
    connector: str
    reporter: str | None = Field(description="null where the caller may not know identities")


class IncidentReport(BaseModel):
    event_id: uuid.UUID
    community_id: str
    source: ReportSource
    observed_at: datetime = Field(description="UTC with Z")
    kind: Kind
    event_type: str
    cancelled: bool = Field(description="withdrawn by a cancel event")
    pinned: bool = Field(description="split out by an operator: never merged automatically")


class TimelineEntry(BaseModel):
    at: datetime = Field(description="when it happened (the report's observed_at), UTC with Z")
    what: str = Field(examples=["report_joined", "report_cancelled", "merged"])
    event_id: uuid.UUID | None = Field(
        description="the event it is about; null when none, or when out of the caller's reach"
    )
    detail: dict[str, Any]


class IncidentDetail(IncidentFeature):
    reports: list[IncidentReport] = Field(
        description="provenance: its member reports the caller may see (cancelled ones too), "
        "by observed_at; a GeoJSON foreign member (properties.reports is the live count)"
    )
    timeline: list[TimelineEntry] = Field(description="what happened to it, by time")


# --- parameters -----------------------------------------------------------------------------

_AREA: TypeAdapter[Polygon | MultiPolygon] = TypeAdapter(
    Annotated[Polygon | MultiPolygon, Field(discriminator="type")]
)


def parse_within(value: str) -> bytes:
    """A WKT or GeoJSON Polygon/MultiPolygon in WGS84, as WKB; anything else is a 400."""
    text = value.strip()
    try:
        if text.startswith("{"):
            geom = shape(_AREA.validate_python(orjson.loads(text)).model_dump())
        else:
            geom = shapely.from_wkt(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "/".join(str(p) for p in err["loc"])
        raise BadRequest(
            f"within: not a GeoJSON Polygon/MultiPolygon: {where}: {err['msg']}"
        ) from exc
    except (orjson.JSONDecodeError, shapely.errors.ShapelyError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BadRequest(
            f"within: not a WKT or GeoJSON Polygon/MultiPolygon (WGS84, lon lat) ({reason})"
        ) from exc
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise BadRequest(f"within: a Polygon or MultiPolygon, not a {geom.geom_type}")
    if geom.is_empty:
        raise BadRequest("within: the polygon is empty")
    geom = shapely.force_2d(geom)
    coords = shapely.get_coordinates(geom)
    if not all(math.isfinite(v) for v in coords.flat):
        raise BadRequest("within: coordinates must be finite numbers")
    if not ((abs(coords[:, 0]) <= 180).all() and (abs(coords[:, 1]) <= 90).all()):
        raise BadRequest("within: coordinates must be WGS84 lon within [-180, 180], lat [-90, 90]")
    if not geom.is_valid:
        raise BadRequest(f"within: invalid polygon ({shapely.is_valid_reason(geom)})")
    wkb: bytes = shapely.to_wkb(geom)
    return wkb


def parse_near(value: str) -> Near:
    parts = value.split(",")
    if len(parts) != 3:
        raise BadRequest(f"near: expected 3 numbers lon,lat,radius_m, got {len(parts)}")
    try:
        lon, lat, radius = (float(p) for p in parts)
    except ValueError as exc:
        raise BadRequest(f"near: {value!r} holds a value that is not a number") from exc
    if not all(math.isfinite(n) for n in (lon, lat, radius)):
        raise BadRequest("near: values must be finite numbers")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise BadRequest("near: lon must be within [-180, 180], lat within [-90, 90]")
    if not 0 <= radius <= MAX_NEAR_RADIUS_M:
        raise BadRequest(f"near: radius_m must be within [0, {MAX_NEAR_RADIUS_M:.0f}] metres")
    return Near(lon, lat, radius)


def parse_reports(value: str) -> tuple[uuid.UUID, ...]:
    """Comma-separated event ids, at most ``MAX_REPORTS``, each a UUID; repeats count once."""
    parts = value.split(",")
    if len(parts) > MAX_REPORTS:
        raise BadRequest(f"report: at most {MAX_REPORTS} event ids, got {len(parts)}")
    ids = []
    for part in parts:
        try:
            ids.append(uuid.UUID(part.strip()))
        except ValueError as exc:
            raise BadRequest(f"report: {part[:60]!r} is not an event id (a UUID)") from exc
    return tuple(dict.fromkeys(ids))


def incident_filter(
    bbox: BBoxParam = None,
    within: Annotated[
        str | None,
        Query(
            description="a WKT or GeoJSON Polygon or MultiPolygon (WGS84, lon lat order, "
            f"valid, at most {MAX_WITHIN_CHARS:,} characters); incidents whose geometry "
            "intersects it",
            examples=["POLYGON((-122.42 37.77,-122.40 37.77,-122.40 37.79,-122.42 37.77))"],
            min_length=1,
            max_length=MAX_WITHIN_CHARS,
            pattern=NO_NUL,
        ),
    ] = None,
    near: Annotated[
        str | None,
        Query(
            description="lon,lat,radius_m: incidents within radius_m metres of the point "
            f"(geodesic, on the WGS84 spheroid; radius at most {MAX_NEAR_RADIUS_M:,.0f} m)",
            examples=["-122.41,37.78,500"],
        ),
    ] = None,
    category: CategoryParam = None,
    event_type: EventTypeParam = None,
    severity: Annotated[Severity | None, Query(description="CAP severity")] = None,
    verification: Annotated[Verification | None, Query()] = None,
    state: Annotated[IncidentState | None, Query()] = None,
    status: StatusParam = "actual",
    since: Annotated[str | None, since_param("last_observed_at")] = None,
    report: Annotated[
        str | None,
        Query(
            description=f"event ids, comma-separated (at most {MAX_REPORTS}): the incidents "
            "holding any of these reports, each naming the ones it holds in `matched_reports`; "
            "a report out of the caller's reach finds nothing, as if it did not exist",
            examples=["0b6f1a52-52c4-4c1e-9a51-3f1f0d7c2b1e,5d0e2f8a-6f0b-4a7e-8d52-1c9b3e4f5a6d"],
            min_length=1,
            max_length=MAX_REPORT_CHARS,
            pattern=NO_NUL,
        ),
    ] = None,
) -> IncidentFilter:
    return IncidentFilter(
        bbox=optional_bbox(bbox),
        within_wkb=parse_within(within) if within is not None else None,
        near=parse_near(near) if near is not None else None,
        category=category,
        event_type=event_type,
        severity=severity,
        verification=verification,
        state=state,
        status=status,
        since=optional_instant("since", since),
        reports=parse_reports(report) if report is not None else None,
    )


# --- output ---------------------------------------------------------------------------------


def listed_incident(row: Row[Any], matched: bool) -> dict[str, Any]:
    """A feature of the list; with ``report=`` (``matched``), which of them it holds."""
    feature = incident_feature(row)
    if matched:
        feature["matched_reports"] = sorted(row.matched_reports)
    return feature


def _report(row: Row[Any]) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "community_id": row.community_id,
        "source": {
            "system": row.source_system,
            "connector": row.source_connector,
            "reporter": row.reporter,
        },
        "observed_at": row.observed_at,
        "kind": row.kind,
        "event_type": row.event_type,
        "cancelled": row.cancelled,
        "pinned": row.pinned,
    }


def _entry(row: Row[Any, Any, Any, Any]) -> dict[str, Any]:
    return {
        "at": row.at,
        "what": row.what,
        "event_id": row.event_id,
        "detail": fragment(row.detail),
    }


# --- endpoints ------------------------------------------------------------------------------


@list_route(
    router,
    "/v1/incidents",
    name="list_incidents",
    summary="Incidents as a GeoJSON FeatureCollection",
    description="Ordered by `updated_seq`, which grows whenever an incident changes: an "
    "incident that changes while a client pages moves to the end, so it is seen again, never "
    "skipped (an incident merged into another disappears; its id answers a redirect). Follow "
    "the `next` link to page; it keeps the filters. Filters combine with AND, and with the "
    "caller's reach: only incidents the principal may see are listed. `status` defaults to "
    "`actual`: the drill pictures (`exercise`, `test`) are listed only when asked for. "
    "`report` answers which incidents hold the given reports (event ids), for instance to "
    "follow one's own reports into the picture; a drill's report is found with its `status`.",
    model=IncidentCollection,
)
def list_incidents(
    access: ReadAccess,
    filters: Annotated[IncidentFilter, Depends(incident_filter)],
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> GeoJSONResponse:
    query = partial(
        incident_queries.list_incidents, access.session, filters, visible=access.incidents
    )
    matched = filters.reports is not None
    return pages.features(
        "list_incidents", query, by_updated_seq, lambda row: listed_incident(row, matched)
    )


@router.get(
    "/v1/incidents/{incident_id}",
    name="get_incident",
    summary="One incident as a GeoJSON Feature, with its provenance",
    description="The Feature carries two foreign members: `reports` (its member reports: "
    "event, community, source, observed_at, cancelled or pinned; `source.reporter` is null "
    "where identities are hidden; members out of the caller's reach are left out) and "
    "`timeline` (what happened to it, by time). An id merged away into another incident "
    "answers 308 with the current incident's URL in `Location`. An incident out of the "
    "caller's reach answers 404, as if it did not exist. A warning, or a verified or refuted "
    "incident, is also a CAP 1.2 alert (`Accept: application/cap+xml` or `f=cap`), zh-CN and "
    "en-US; any other incident answers 406 to `f=cap`.",
    response_class=GeoJSONResponse,
    response_model=IncidentDetail,
    responses={
        200: {"content": CAP_RESPONSE},
        308: {
            "description": "Permanent Redirect: the incident was merged into another",
            "headers": {
                "Location": {
                    "description": "the URL of the incident it was merged into",
                    "schema": {"type": "string", "format": "uri"},
                }
            },
        },
        **problem_responses(400, 401, 403, 404, 406, 429, 500),
    },
)
def get_incident(
    request: Request,
    settings: SettingsDep,
    access: ReadAccess,
    incident_id: Annotated[uuid.UUID, Path(description="the incident id")],
    f: FormatParam = None,
) -> Response:
    found = incident_queries.get_incident(access.session, incident_id, access.incidents)
    if found is None:
        current = incident_queries.merged_into(access.session, incident_id, access.incidents)
        if current is None:
            raise NotFound(f"no incident {incident_id}")
        request.state.audit_rows = 0
        there = request.app.url_path_for("get_incident", incident_id=str(current))
        there += f"?{request.url.query}" if request.url.query else ""  # f=cap stays
        return RedirectResponse(absolute_url(request, settings, there), status_code=308)
    request.state.audit_rows = 1
    cap, strict = wants_cap(request, f)
    if cap and (alert := cap_response(request, settings, access, found.incident, strict)):
        return alert
    feature = incident_feature(found.incident)
    feature["reports"] = [_report(r) for r in found.reports]
    feature["timeline"] = [_entry(t) for t in found.timeline]
    return feature_item(
        request, settings, feature, "list_incidents", "get_incident", incident_id=str(incident_id)
    )
