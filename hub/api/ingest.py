"""``POST /v1/events``: community systems without a Kafka client report events over HTTP.

The batch is checked here (size, nesting depth, the event contract, who may write for which
community) and the valid events go to the events topic exactly as a connector sends them (same
key, same canonical JSON); fusion takes it from there. The answer waits for the broker's
acknowledgements, so a 202 means the events are in the log, not yet that they are stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from geo.tiles import event_key
from hub.access.principal import Principal
from hub.api.deps import SettingsDep
from hub.api.errors import ApiError, BadRequest, problem, problem_responses
from hub.api.limits import json_depth
from hub.api.producer import closing_producer, publish
from hub.auth.deps import require_scope
from hub.errors import TooLarge
from hub.settings import Settings
from schemas.event import Event, holds_nul, load_event_schema, parse_event

# The lifespan is merged into the app's by include_router, so it composes with the audit's.
router = APIRouter(tags=["events"], lifespan=closing_producer)

MAX_ERRORS_PER_ITEM = 10


# --- response models --------------------------------------------------------------------------


class ItemError(BaseModel):
    pointer: str = Field(
        description="JSON Pointer (RFC 6901) into the request body", examples=["/3/geometry"]
    )
    detail: str


class RejectedEvent(BaseModel):
    index: int = Field(description="position of the event in the batch, from 0")
    event_id: str | None = Field(description="the event_id the item carried, if any")
    status: Literal[400, 403] = Field(
        description="400: the event breaks the contract; 403: this client may not write it"
    )
    detail: str
    errors: list[ItemError]


class IngestResult(BaseModel):
    accepted: list[uuid.UUID] = Field(description="event ids in the log, in request order")
    rejected: list[RejectedEvent] = Field(description="empty with 202; the refused events with 207")


# --- the request body -------------------------------------------------------------------------


class ContentTooLarge(ApiError, TooLarge):
    pass


async def raw_body(request: Request) -> bytes:
    # Read here, parsed on the view's thread: parsing a few MiB must not stall the event loop.
    # The body-limit middleware has already refused (413) a body beyond the size limit.
    return await request.body()


def parse_batch(raw: bytes, settings: Settings) -> list[Any]:
    """The JSON array of the body, within the depth and batch limits (400 / 413 otherwise)."""
    depth = json_depth(raw)
    if depth > settings.api_max_json_depth:
        raise BadRequest(f"the JSON body is nested deeper than {settings.api_max_json_depth}")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise BadRequest("the body must be a JSON array of events")
    if not items:
        raise BadRequest("the batch is empty")
    if len(items) > settings.api_max_batch:
        raise ContentTooLarge(
            f"{len(items)} events in one request; at most {settings.api_max_batch}: split the batch"
        )
    return items


# --- per-item checks --------------------------------------------------------------------------


def write_refusal(principal: Principal, community_id: str | None) -> str | None:
    """Why ``principal`` may not write an event of ``community_id``; None when it may."""
    if principal.kind == "admin":
        return None
    if principal.kind != "community" or principal.community_id is None:
        return f"a {principal.kind} client may not write events"
    if community_id is not None and community_id != principal.community_id:
        return (
            f"this client writes for community {principal.community_id!r} only, "
            f"not {community_id!r}"
        )
    return None


def check_item(index: int, item: Any, principal: Principal) -> Event | RejectedEvent:
    """The event to produce, or why it is refused."""
    raw = orjson.dumps(item)
    if holds_nul(raw):
        why = "a string holds a NUL character (\\u0000), which the hub cannot store"
        return RejectedEvent(
            index=index,
            event_id=_claimed_id(item),
            status=400,
            detail=why,
            errors=[ItemError(pointer=f"/{index}", detail=why)],
        )
    try:
        # From JSON text, exactly as fusion validates what it consumes.
        event = parse_event(raw)
    except ValidationError as exc:
        return _invalid(index, item, exc)
    if len(_position_sizes(event.geometry.coordinates)) > 1:
        # The contract lets each position have 2 or 3 numbers, but shapely (the partition key,
        # fusion's geometry columns) refuses a mix: such a message would stop fusion.
        pointer = _pointer(index, item, ("geometry", "coordinates"))
        mixed = "positions mix 2 and 3 coordinates; give every position of a geometry the same"
        return _refused(index, event, 400, pointer, mixed, f"{pointer}: {mixed}")
    if event.kind == "verification":
        pointer = _pointer(index, item, ("kind",))
        own = (
            "verification events are the hub's own record of a decision: use POST "
            "/v1/incidents/{id}/verification or /split, which check who may rule"
        )
        return _refused(index, event, 403, pointer, own, own)
    refusal = write_refusal(principal, event.community_id)
    if refusal is not None:
        pointer = _pointer(index, item, ("community_id",))
        return _refused(index, event, 403, pointer, refusal, refusal)
    if event.community_id is None and principal.kind == "community":
        # Fusion would assign a community from the geometry, possibly a neighbour: a community
        # client's events are its own community's.
        event = event.model_copy(update={"community_id": principal.community_id})
    return event


def _refused(
    index: int, event: Event, status: Literal[400, 403], pointer: str, why: str, detail: str
) -> RejectedEvent:
    errors = [ItemError(pointer=pointer, detail=why)]
    return RejectedEvent(
        index=index, event_id=str(event.event_id), status=status, detail=detail, errors=errors
    )


def _invalid(index: int, item: Any, exc: ValidationError) -> RejectedEvent:
    # Union members repeat one another's complaints (a position is checked as a pair and as
    # a triple): each (pointer, message) once.
    found = {
        (_pointer(index, item, e["loc"]), e["msg"]): None
        for e in exc.errors(include_url=False, include_input=False)
    }
    errors = [ItemError(pointer=p, detail=m) for p, m in list(found)[:MAX_ERRORS_PER_ITEM]]
    detail = "; ".join(f"{e.pointer}: {e.detail}" for e in errors[:3])
    if len(found) > 3:
        detail += f" (and {len(found) - 3} more)"
    return RejectedEvent(
        index=index, event_id=_claimed_id(item), status=400, detail=detail, errors=errors
    )


def _position_sizes(coordinates: Any) -> set[int]:
    """How many numbers the positions of a GeoJSON ``coordinates`` value have (nesting <= 3)."""
    if coordinates and isinstance(coordinates[0], int | float):
        return {len(coordinates)}
    return set().union(*(_position_sizes(c) for c in coordinates))


def _claimed_id(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    return value[:100] if isinstance(value, str) else None


def _pointer(index: int, item: Any, loc: Sequence[int | str]) -> str:
    """A JSON Pointer to where pydantic's ``loc`` points in the body.

    ``loc`` also names union members ("Point", "tuple[float, float]"), which are no place in
    the document: a name is kept only when the object has it, or when it is the last one (a
    missing field); a list index is always kept (past the end: a missing position)."""
    parts = [str(index)]
    node = item
    for n, segment in enumerate(loc):
        if isinstance(segment, int) and isinstance(node, list):
            parts.append(str(segment))
            node = node[segment] if 0 <= segment < len(node) else None
        elif isinstance(segment, str) and isinstance(node, dict):
            if segment not in node and n < len(loc) - 1:
                continue  # a union member's name
            parts.append(segment)
            node = node.get(segment)
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


# --- the route --------------------------------------------------------------------------------


@cache
def _event_schema() -> dict[str, Any]:
    """The contract (``schemas/event.v1.json``) with its ``$defs`` inlined: inside an OpenAPI
    document a "#/$defs/..." reference would resolve against the document, not the schema."""
    contract = load_event_schema()
    defs = contract.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items() if k not in ("$defs", "$id", "$schema")}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema: dict[str, Any] = inline(contract)
    return schema


DESCRIPTION = """\
Report a batch of events (for systems without a Kafka client; connectors publish to Kafka).

**Body**: a JSON array of 1 to `HUB_API_MAX_BATCH` (default 1000) events of the event contract
(`schemas/event.v1.json`); nothing else (no wrapping object). More events answer 413, and so
does a body larger than `HUB_API_MAX_BODY_BYTES` (default 4 MiB), with or without
Content-Length. A body nested deeper than `HUB_API_MAX_JSON_DEPTH` (default 32) or that is not
a JSON array answers 400.

**Who may write what**: a community client writes for its own community only (an event
without `community_id` is its community's; another `community_id` is refused, 403 for that
event); an admin writes for any community (an unknown community reaches fusion's dead-letter
topic); other clients may not write events. Requires the scope `events:write`.

**Answers**: every event accepted: 202 with their ids. Some accepted, some not: 207 with the
accepted ids and, per refused event, its index, its `event_id`, the status it would have had
(400 contract violation, 403 not allowed) and JSON Pointers to what is wrong; only the accepted
events are produced. None accepted: a 400 problem (403 when every event was refused for
permission) whose `errors` member holds the same per-event entries.

**Delivery**: the answer comes after the broker acknowledged every accepted event (acks=all).
If the broker is unreachable the answer is 503 with Retry-After and nothing counts as accepted.
Event ids are the idempotency key: resending the same batch (after a 503, a timeout or a lost
answer) is safe, fusion keeps one copy of each event.
"""


def _records(events: list[Event], zoom: int) -> list[tuple[bytes, bytes]]:
    # What a connector sends: the tile key of the geometry and the canonical JSON.
    return [(event_key(e, zoom), e.to_json()) for e in events]


@router.post(
    "/v1/events",
    name="post_events",
    summary="Report events (a batch)",
    description=DESCRIPTION,
    status_code=202,
    response_model=IngestResult,
    response_description="Every event accepted: in the log",
    responses={
        207: {"model": IngestResult, "description": "Some events accepted, some refused"},
        **problem_responses(400, 401, 403, 413, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "minItems": 1, "items": _event_schema()}
                }
            },
        }
    },
)
def post_events(
    request: Request,
    # Declared before the body: a caller without the scope (or over its rate) is refused
    # before its body is read.
    principal: Annotated[Principal, Depends(require_scope("events:write"))],
    raw: Annotated[bytes, Depends(raw_body)],
    settings: SettingsDep,
) -> Response:
    items = parse_batch(raw, settings)
    events: list[Event] = []
    rejected: list[RejectedEvent] = []
    for index, item in enumerate(items):
        checked = check_item(index, item, principal)
        if isinstance(checked, Event):
            events.append(checked)
        else:
            rejected.append(checked)
    if not events:
        return _nothing_accepted(request, rejected)
    publish(
        request.app,
        _records(events, settings.tile_zoom),
        "nothing was accepted (resending the same event ids is safe)",
    )
    request.state.audit_rows = len(events)
    result = IngestResult(accepted=[e.event_id for e in events], rejected=rejected)
    return JSONResponse(result.model_dump(mode="json"), status_code=207 if rejected else 202)


def _nothing_accepted(request: Request, rejected: list[RejectedEvent]) -> Response:
    forbidden = all(r.status == 403 for r in rejected)
    status = 403 if forbidden else 400
    if len(rejected) == 1:
        detail = rejected[0].detail
    elif forbidden:
        detail = f"this client may write none of the {len(rejected)} events"
    else:
        detail = f"none of the {len(rejected)} events was accepted"
    errors = [r.model_dump(mode="json") for r in rejected]
    return problem(request, status, detail, errors=errors)
