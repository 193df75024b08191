"""``/v1/subscriptions``: webhooks, the stream's changes pushed to a principal's own endpoint.

A subscription acts for the principal that created it (its reach is evaluated again at every
delivery) and asks for changes with the stream's parameters (``types``, ``filters``). The API
only stores it: the notifier (``hub notify run``) delivers, never a request of the API. The
signing secret is made here, answered once in the 201, and written where the API role can
never read it back (migration 0015_webhooks). The target is checked against server-side
request forgery at creation (``hub.access.targets``) and again before each delivery.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, Security
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Row

from hub.access import targets
from hub.access.changes import SCOPES, readable
from hub.api.deps import Access, SettingsDep, get_access
from hub.api.errors import BadRequest, Forbidden, NotFound, problem_responses
from hub.api.params import NO_NUL
from hub.api.stream import change_filter
from hub.store import webhooks
from hub.store.change_queries import TYPES, last_seq
from schemas.event import Status
from schemas.picture import RiskLevel

router = APIRouter(tags=["subscriptions"])

WriteAccess = Annotated[Access, Security(get_access, scopes=["subscriptions:write"])]
ChangeType = Literal["incident", "warning", "risk", "resource"]
SubscriptionId = Annotated[uuid.UUID, Path(description="the subscription's id")]


class Filters(BaseModel):
    """The stream's query parameters, with the same meaning and format."""

    model_config = ConfigDict(extra="forbid")

    bbox: str | None = Field(
        None, max_length=200, pattern=NO_NUL, description="minLon,minLat,maxLon,maxLat (WGS84)"
    )
    community: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    event_type: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    verification: str | None = Field(
        None, max_length=200, pattern=NO_NUL, description="comma list of verification states"
    )
    min_level: RiskLevel | None = None
    status: Status = "actual"


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=2000, pattern=NO_NUL, description="http(s) endpoint to POST to"
    )
    types: list[ChangeType] | None = Field(
        None, min_length=1, description="change types (default: every one the caller may read)"
    )
    filters: Filters = Field(default_factory=Filters)


class Subscription(BaseModel):
    id: uuid.UUID
    url: str
    types: list[str]
    filters: dict[str, Any]
    created_at: datetime
    active: bool
    cursor: int = Field(description="the last change sequence handled")
    failures: int = Field(description="consecutive failed attempts")
    next_attempt_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None


class CreatedSubscription(Subscription):
    secret: str = Field(description="the Standard Webhooks signing secret (whsec_...), shown once")


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


class Delivery(BaseModel):
    id: int
    seq: int = Field(description="the change delivered")
    webhook_id: str = Field(description="the `webhook-id` header: the same on every retry")
    attempt: int
    at: datetime
    outcome: Literal["delivered", "failed", "refused"]
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


def _public(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "types": row.types,
        "filters": row.filters,
        "created_at": row.created_at,
        "active": row.disabled_at is None,
        "cursor": row.cursor_seq,
        "failures": row.failures,
        "next_attempt_at": row.next_attempt_at,
        "disabled_at": row.disabled_at,
        "disabled_reason": row.disabled_reason,
    }


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@router.post(
    "/v1/subscriptions",
    name="create_subscription",
    status_code=201,
    summary="Subscribe a webhook to the picture's changes",
    description="The notifier POSTs each matching change the caller may see to `url`, the body "
    "being the stream's event data `{seq, type, change, id, at, object}`, signed per Standard "
    "Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the `secret` "
    "answered here once. At-least-once, in change order, from now on; a failed delivery is "
    "retried with exponential backoff under the same `webhook-id`, and the subscription is "
    "disabled after `HUB_WEBHOOK_MAX_FAILURES` consecutive failures. `filters` takes the "
    "stream's parameters. Private, loopback and link-local targets are refused (400) unless "
    "the operator allows the host (`HUB_WEBHOOK_ALLOWED_HOSTS`).",
    response_model=CreatedSubscription,
    responses=problem_responses(400, 401, 403, 429),
)
def create_subscription(
    body: SubscriptionIn, settings: SettingsDep, access: WriteAccess
) -> dict[str, Any]:
    principal = access.principal
    asked = tuple(body.types or TYPES)
    if not readable(principal, asked):
        raise Forbidden(f"the token reads none of the types asked ({', '.join(sorted(SCOPES))})")
    f = body.filters
    wanted = change_filter(
        None, f.bbox, f.community, f.event_type, f.verification, f.min_level, f.status
    )
    try:
        targets.check(body.url, settings.webhook_allowed_hosts)
    except targets.TargetRefused as exc:
        raise BadRequest(str(exc)) from exc
    new = webhooks.NewSubscription(
        id=uuid.uuid4(),
        subject=principal.subject,
        issuer=principal.issuer,
        client_id=principal.client_id,
        kind=principal.kind,
        community_id=principal.community_id,
        jurisdiction_wkb=principal.jurisdiction_wkb,
        categories=sorted(principal.categories) if principal.categories is not None else None,
        scopes=sorted(principal.scopes),
        url=body.url,
        types=list(asked),
        filters=webhooks.filter_json(wanted),
        cursor_seq=last_seq(access.session),
    )
    secret = new_secret()
    row = webhooks.create_subscription(access.session, new, secret)
    return {**_public(row), "secret": secret}


@router.get(
    "/v1/subscriptions",
    name="list_subscriptions",
    summary="The caller's own webhook subscriptions",
    response_model=SubscriptionList,
    responses=problem_responses(401, 403, 429),
)
def list_subscriptions(access: WriteAccess) -> dict[str, Any]:
    rows = webhooks.own_subscriptions(access.session, access.principal.subject)
    return {"subscriptions": [_public(r) for r in rows]}


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries",
    name="list_deliveries",
    summary="The delivery log of one of the caller's subscriptions, newest first",
    response_model=DeliveryList,
    responses=problem_responses(400, 401, 403, 404, 429),
)
def list_deliveries(
    subscription_id: SubscriptionId,
    access: WriteAccess,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="attempts older than this id")] = None,
) -> dict[str, Any]:
    if webhooks.own_subscription(access.session, access.principal.subject, subscription_id) is None:
        raise NotFound(f"no subscription {subscription_id} of yours")
    rows = webhooks.deliveries(access.session, subscription_id, before, limit)
    return {"deliveries": [dict(r._mapping) for r in rows]}


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    name="delete_subscription",
    status_code=204,
    summary="Delete one of the caller's subscriptions (its secret and log with it)",
    response_class=Response,
    responses=problem_responses(400, 401, 403, 404, 429),
)
def delete_subscription(subscription_id: SubscriptionId, access: WriteAccess) -> Response:
    if not webhooks.delete_subscription(access.session, access.principal.subject, subscription_id):
        raise NotFound(f"no subscription {subscription_id} of yours")
    return Response(status_code=204)
