"""``/v1/audit``: a principal's own audit trail (accountability after the event).

A department (or any principal) reads what it did itself; an admin may name any subject. Row-level
security holds the same line in the database (migration 0003_api_access): a principal's session
sees only its own rows of ``audit_log``, an admin's all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, cast

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, Security
from pydantic import BaseModel, Field

from hub.api.deps import Access, SettingsDep, get_access
from hub.api.geojson import JSON_MEDIA_TYPE, JSONBytesResponse, Link, dumps, page_links
from hub.api.listing import list_route
from hub.api.params import NO_NUL, limit_param, optional_instant, since_param
from hub.audit import store

router = APIRouter(tags=["audit"])

MAX_LIMIT = 1000


class AuditEntry(BaseModel):
    id: int = Field(description="position in the hash chain")
    at: datetime = Field(description="when the request started (UTC, Z)")
    subject: str | None
    principal_kind: str | None
    client_id: str | None
    issuer: str | None
    method: str
    endpoint: str | None = Field(description="the route template; null: no route matched")
    path: str
    params: dict[str, Any] = Field(description='{"path": {...}, "query": {...}}')
    status: int
    rows: int | None = Field(description="rows returned or written, as the view reported")
    client_addr: str | None
    duration_ms: float


class AuditTrail(BaseModel):
    subject: str
    entries: list[AuditEntry]
    numberReturned: int
    links: list[Link]


def _entry(entry: store.TrailEntry) -> dict[str, Any]:
    record = entry.record
    return {
        "id": entry.id,
        "at": record.at.astimezone(UTC),  # written with Z
        "subject": record.subject,
        "principal_kind": record.principal_kind,
        "client_id": record.client_id,
        "issuer": record.issuer,
        "method": record.method,
        "endpoint": record.endpoint,
        "path": record.path,
        "params": record.params,
        "status": record.status,
        "rows": record.rows,
        "client_addr": record.client_addr,
        "duration_ms": float(cast(Decimal, record.duration_ms)),
    }


def _whose(access: Access, subject: str | None) -> str:
    own = access.principal.subject
    if subject is None or subject == own:
        return own
    if access.principal.kind != "admin":
        raise HTTPException(403, "only an admin may read another principal's audit trail")
    return subject


@list_route(
    router,
    "/v1/audit",
    name="audit_trail",
    summary="The caller's own audit trail, oldest first",
    description="Every /v1 request the principal made: endpoint, parameters, status, rows, "
    "when and from where. An admin may pass `subject` to read anyone's. Follow `next` to page.",
    model=AuditTrail,
    response_class=JSONBytesResponse,
)
def audit_trail(
    request: Request,
    settings: SettingsDep,
    access: Annotated[Access, Security(get_access)],
    subject: Annotated[
        str | None,
        Query(min_length=1, max_length=500, pattern=NO_NUL, description="default: the caller"),
    ] = None,
    since: Annotated[str | None, since_param("at", example=False)] = None,
    after: Annotated[int, Query(ge=0, description="the last id seen; from a next link")] = 0,
    limit: int = limit_param(MAX_LIMIT),
) -> JSONBytesResponse:
    whose = _whose(access, subject)
    start = optional_instant("since", since)
    conn = cast("psycopg.Connection[Any]", access.session.connection().connection.driver_connection)
    # On the request's own transaction: row-level security sees the principal set for it.
    entries = store.trail(conn, subject=whose, since=start, after_id=after, limit=limit + 1)
    more, entries = len(entries) > limit, entries[:limit]
    request.state.audit_rows = len(entries)
    # Paged by id rather than by cursor: ``after`` is the last id of the page before.
    at = str(after) if after else None
    following = str(entries[-1].id) if more else None
    links = page_links(
        request, settings, "audit_trail", at, following, key="after", media_type=JSON_MEDIA_TYPE
    )
    body = {
        "subject": whose,
        "entries": [_entry(e) for e in entries],
        "numberReturned": len(entries),
        "links": links,
    }
    return JSONBytesResponse(dumps(body))
