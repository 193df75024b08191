"""``/v1/resources``: communities' stock and needs (their latest ``resource`` statements) as
GeoJSON; ``/v1/resources/matches``: each need with the nearest other communities' surplus.

Conventions are those of ``/v1/events`` and ``/v1/incidents``: parameters parsed the same way,
problem+json on bad input, paging by update sequence with a ``next`` link that keeps the
filters, the caller's reach compiled into the query (``access.resources``, from ``hub.access``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security
from pydantic import BaseModel, Field

from hub.access.features import balance_feature
from hub.api.deps import Access, get_access
from hub.api.geojson import (
    JSON_MEDIA_TYPE,
    FeatureBase,
    FeatureCollectionBase,
    GeoJSONResponse,
    JSONBytesResponse,
    Link,
    dumps,
    fragment,
)
from hub.api.listing import Listing, by_updated_seq, list_route, listing
from hub.api.params import CommunityParam, StatusParam, text_param
from hub.store import resource_queries
from hub.store.resource_queries import (
    BalanceFilter,
    MatchFilter,
    NeedMatches,
    greedy_cover,
)
from schemas.event import Point, Status
from schemas.resource import Direction

router = APIRouter(tags=["resources"])

ResourceAccess = Annotated[Access, Security(get_access, scopes=["resources:read"])]

MAX_LIMIT = 1_000
MAX_PER_NEED = 20
MAX_DISTANCE_M = 1_000_000.0  # mutual aid within a region, not across a continent


class BalanceFields(BaseModel):
    community_id: str = Field(description="the community that stated it")
    status: Status = Field(description="the picture: actual, or a drill (exercise, test)")
    resource_type: str = Field(examples=["drinking_water", "sandbags", "volunteers"])
    unit: str = Field(examples=["litre", "bag", "person"])
    quantity: float = Field(ge=0, description="as stated by the latest live statement")
    observed_at: datetime = Field(description="when the statement was made, UTC with Z")
    event_id: uuid.UUID = Field(description="the resource event that stated it")


class BalanceProperties(BalanceFields):
    direction: Direction = Field(description="available (stock to lend) or needed")
    updated_seq: int = Field(
        description="grows whenever the balance changes; the order of the collection"
    )


class BalanceFeature(FeatureBase):
    geometry: Point = Field(description="a point on the statement's geometry")
    properties: BalanceProperties


class BalanceCollection(FeatureCollectionBase):
    features: list[BalanceFeature]
    numberReturned: int


class Offer(BaseModel):
    community_id: str = Field(description="a community with surplus")
    quantity: float = Field(gt=0, description="how much it has available")
    observed_at: datetime = Field(description="when it stated it, UTC with Z")
    event_id: uuid.UUID = Field(description="the resource event that stated it")
    distance_m: float = Field(
        ge=0, description="straight-line geodesic distance between the two points, metres"
    )
    covers: float = Field(
        ge=0, description="how much of the need it would fill, filling nearest first"
    )


class NeedMatch(BalanceFields):
    updated_seq: int = Field(description="the need's update sequence; the order of the page")
    geometry: Point = Field(description="where the need is (a point on its statement)")
    covered: float = Field(ge=0, description="the sum of the offers' covers")
    shortfall: float = Field(ge=0, description="what the listed offers leave unfilled")
    offers: list[Offer] = Field(
        description="other communities' offers of the same resource type, unit and picture, "
        "nearest first (ties by community id)"
    )


class MatchPage(BaseModel):
    needs: list[NeedMatch]
    numberReturned: int
    links: list[Link] = Field(description="self, and next when more needs exist")


# --- output ---------------------------------------------------------------------------------


def need_match(found: NeedMatches) -> dict[str, Any]:
    need = found.need
    covers = greedy_cover(need.quantity, [o.offer_quantity for o in found.offers])
    covered = sum(covers)
    return {
        "community_id": need.community_id,
        "status": need.status,
        "resource_type": need.resource_type,
        "unit": need.unit,
        "quantity": need.quantity,
        "observed_at": need.observed_at,
        "event_id": need.event_id,
        "updated_seq": need.updated_seq,
        "geometry": fragment(need.geometry),
        "covered": covered,
        "shortfall": max(need.quantity - covered, 0.0),
        "offers": [
            {
                "community_id": o.offer_community_id,
                "quantity": o.offer_quantity,
                "observed_at": o.offer_observed_at,
                "event_id": o.offer_event_id,
                "distance_m": round(o.distance_m, 1),
                "covers": cover,
            }
            for o, cover in zip(found.offers, covers, strict=True)
        ],
    }


# --- endpoints ------------------------------------------------------------------------------

ResourceTypeParam = Annotated[str | None, text_param("resource type code, e.g. drinking_water")]


@list_route(
    router,
    "/v1/resources",
    name="list_resources",
    summary="Communities' stock and needs as a GeoJSON FeatureCollection",
    description="One feature per community, picture, resource type, unit and direction: the "
    "quantity of the community's latest live `resource` statement, at a point of its "
    "geometry. Ordered by `updated_seq`, which grows whenever a balance changes (a balance "
    "whose statements were all withdrawn disappears). Follow the `next` link to page; it "
    "keeps the filters. Every principal sees every community's real stock and needs (mutual "
    "aid is shared; a department those of the communities its jurisdiction touches), a "
    "community its own drills too. `status` defaults to `actual`.",
    model=BalanceCollection,
)
def list_resources(
    access: ResourceAccess,
    status: StatusParam = "actual",
    community: CommunityParam = None,
    resource_type: ResourceTypeParam = None,
    direction: Annotated[Direction | None, Query(description="available or needed")] = None,
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> GeoJSONResponse:
    filters = BalanceFilter(status, community, resource_type, direction)
    query = partial(resource_queries.list_balances, access.session, filters, access.resources)
    return pages.features("list_resources", query, by_updated_seq, balance_feature)


@list_route(
    router,
    "/v1/resources/matches",
    name="match_resources",
    summary="Each need with the nearest other communities' surplus",
    description="For each need (a `needed` balance with quantity > 0) the caller may see, "
    "the offers (`available`, quantity > 0) of the same picture, resource type and unit from "
    "other communities, nearest first by straight-line geodesic distance between the two "
    "balances' points (roads are out of scope), at most `per_need`, optionally within "
    "`max_distance_m`. `covers` fills the need greedily, nearest first, so the covers add up "
    "to the smaller of the need and the offers' sum. A community's own needs by default; "
    "other principals see every need they may see. Needs are ordered by `updated_seq`; "
    "follow the `next` link to page.",
    model=MatchPage,
    response_class=JSONBytesResponse,
)
def match_resources(
    access: ResourceAccess,
    status: StatusParam = "actual",
    community: Annotated[
        str | None,
        text_param("the needing community; a community principal's own by default"),
    ] = None,
    resource_type: ResourceTypeParam = None,
    per_need: Annotated[int, Query(ge=1, le=MAX_PER_NEED, description="most offers per need")] = 3,
    max_distance_m: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_DISTANCE_M,
            allow_inf_nan=False,
            description="only offers within this distance, metres",
        ),
    ] = None,
    pages: Listing = Depends(listing(MAX_LIMIT)),
) -> JSONBytesResponse:
    principal = access.principal
    if community is None and principal.kind == "community":
        community = principal.community_id
    filters = MatchFilter(status, community, resource_type, per_need, max_distance_m)
    query = partial(resource_queries.list_matches, access.session, filters, access.resources)
    found, next_cursor = pages.fetch(query, lambda match: match.need.updated_seq)
    pages.request.state.audit_rows = len(found)
    body = {
        "needs": [need_match(f) for f in found],
        "numberReturned": len(found),
        "links": pages.links("match_resources", next_cursor, JSON_MEDIA_TYPE),
    }
    return JSONBytesResponse(dumps(body))
