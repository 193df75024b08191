"""``GET /v1/stream``: the picture's changes as Server-Sent Events (``sse-starlette``).

Each change of the log fusion writes (``hub.fusion.changes``) is sent as an event named after
its type, with the change sequence as its ``id`` and ``{"seq", "type", "change", "id", "at",
"object"}`` as its data, ``object`` being the Feature the type's list endpoint gives this
caller. Every poll opens a fresh session with the caller's reach (row-level security set), so
a change is sent only when its object is in reach, exactly as the list endpoint would show it.

A client is woken by fusion's NOTIFY (``hub.api.stream_wake``) or, failing that, polls. Each
client reads the log at its own pace from its own cursor, so a slow one never holds the others
back; one that does not take a message within ``HUB_STREAM_SEND_TIMEOUT_S`` is dropped, and
resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from hub.access.changes import READ_LIMIT, SCOPES, changes_seen, readable
from hub.access.principal import Principal
from hub.api.deps import SettingsDep
from hub.api.errors import BadRequest, Forbidden, problem, problem_responses
from hub.api.geojson import dumps
from hub.api.params import BBoxParam, EventTypeParam, StatusParam, optional_bbox, text_param
from hub.api.stream_wake import Wake
from hub.auth.deps import PrincipalDep
from hub.settings import Settings
from hub.store.change_queries import TYPES, ChangeFilter
from schemas.picture import RiskLevel

router = APIRouter(tags=["stream"])
log = logging.getLogger(__name__)

VERIFICATIONS = ("reported", "corroborated", "verified", "refuted")


@dataclass(frozen=True)
class Client:
    """One stream client: who it is and what it asked for."""

    principal: Principal
    filters: ChangeFilter
    settings: Settings
    zones: Any


def _comma_list(name: str, value: str | None, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    wrong = [v for v in items if v not in allowed]
    if wrong or not items:
        raise BadRequest(f"{name}: {', '.join(wrong) or 'empty'}; one or more of {allowed}")
    return items


def change_filter(
    types: str | None,
    bbox: str | None,
    community: str | None,
    event_type: str | None,
    verification: str | None,
    min_level: str | None,
    status: str,
) -> ChangeFilter:
    """The changes the stream's parameters ask for (a webhook's filters are the same);
    BadRequest names a wrong one."""
    return ChangeFilter(
        types=_comma_list("types", types, TYPES) or TYPES,
        status=status,
        bbox=optional_bbox(bbox),
        community=community,
        event_type=event_type,
        verification=_comma_list("verification", verification, VERIFICATIONS),
        min_level=min_level,
    )


def _cursor(after: int | None, last_event_id: str | None) -> int | None:
    """Where to resume: ``Last-Event-ID`` wins over ``after``; None: from now on."""
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        seq = int(last_event_id.strip())
    except ValueError as exc:
        raise BadRequest("Last-Event-ID: not a change sequence (an integer)") from exc
    if seq < 0:
        raise BadRequest("Last-Event-ID: a change sequence is not negative")
    return seq


# --- reading ----------------------------------------------------------------------------------


def read_changes(client: Client, after: int | None) -> tuple[list[ServerSentEvent], int]:
    """The events of the changes after ``after`` (None: from now on) the client may see, and
    the sequence read up to (the cursor of the next read)."""
    seen, cursor = changes_seen(
        client.settings, client.principal, client.zones, client.filters, after, READ_LIMIT
    )
    events = [ServerSentEvent(dumps(d).decode(), event=d["type"], id=str(d["seq"])) for d in seen]
    return events, cursor


async def _events(
    client: Client, after: int | None, wake: Wake, done: Callable[[], None]
) -> AsyncIterator[ServerSentEvent]:
    woken = wake.subscribe()
    try:
        while True:
            woken.clear()  # before reading: a NOTIFY during the read wakes the next wait
            events, after = await to_thread.run_sync(read_changes, client, after)
            for event in events:
                yield event
            if len(events) < READ_LIMIT:
                with contextlib.suppress(TimeoutError):  # the poll fallback
                    await asyncio.wait_for(woken.wait(), client.settings.stream_poll_s)
    finally:
        wake.unsubscribe(woken)
        done()


# --- the endpoint -------------------------------------------------------------------------------


def _wake(request: Request, settings: Settings) -> Wake:
    state = request.app.state
    if getattr(state, "stream_wake", None) is None:
        state.stream_wake = Wake(settings)
        state.stream_clients = 0
    wake: Wake = state.stream_wake
    return wake


@router.get(
    "/v1/stream",
    name="stream_changes",
    summary="The picture's changes as Server-Sent Events",
    description="One event per change of the picture, in change-sequence order: the event name "
    "is its type (`incident`, `warning`, `risk`, `resource`), its `id` the change sequence, its "
    "data `{seq, type, change, id, at, object}`, where `object` is the Feature the type's list "
    "endpoint gives the caller (re-read when sent: its current state). `change`: incident "
    "`created`, `updated`, `merged`, `split`, `verified`, `refuted`, `closed`; warning "
    "`raised`, `changed`, `lowered`; risk `raised`, `lowered` (the cell's colour); resource "
    "`changed`. A change is sent only when the caller holds its type's read scope "
    "(`incidents:read` for incidents and warnings, `risk:read`, `resources:read`) and sees the "
    "object; the route needs one of them. Without a cursor the stream starts now; "
    "`Last-Event-ID` (or `after`) resumes: every change after it, once, in order. Heartbeat "
    "comments keep proxies open. `event_type` and `verification` narrow incident and warning "
    "changes, `min_level` risk changes. At `HUB_STREAM_MAX_CLIENTS` connections the answer is "
    "503 with `Retry-After`.",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "text/event-stream of changes",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 403, 429, 503),
    },
)
async def stream_changes(
    request: Request,
    settings: SettingsDep,
    principal: PrincipalDep,
    types: Annotated[
        str | None, text_param("comma list of incident, warning, risk, resource (default: all)")
    ] = None,
    bbox: BBoxParam = None,
    community: Annotated[str | None, text_param("community id: changes touching it")] = None,
    event_type: EventTypeParam = None,
    verification: Annotated[
        str | None, text_param(f"comma list of {', '.join(VERIFICATIONS)}")
    ] = None,
    min_level: Annotated[
        RiskLevel | None, Query(description="risk changes to this level or above")
    ] = None,
    status: StatusParam = "actual",
    after: Annotated[
        int | None, Query(ge=0, description="resume after this change sequence")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Any:
    if not readable(principal, TYPES):
        raise Forbidden(f"the token lacks every read scope ({', '.join(sorted(SCOPES))})")
    asked = change_filter(types, bbox, community, event_type, verification, min_level, status)
    filters = replace(asked, types=readable(principal, asked.types) or ("none",))
    cursor = _cursor(after, last_event_id)
    wake = _wake(request, settings)
    state = request.app.state
    if state.stream_clients >= settings.stream_max_clients:
        retry = str(max(1, round(settings.stream_poll_s)))
        detail = f"the stream serves {settings.stream_max_clients} clients; retry later"
        return problem(request, 503, detail, headers={"Retry-After": retry})
    state.stream_clients += 1

    def done() -> None:
        state.stream_clients -= 1

    client = Client(principal, filters, settings, state.zones)
    return EventSourceResponse(
        _events(client, cursor, wake, done),
        ping=settings.stream_ping_s,
        send_timeout=settings.stream_send_timeout_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
