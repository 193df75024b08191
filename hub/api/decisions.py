"""``POST /v1/incidents/{id}/verification`` and ``/split``: an operator's word on an incident.

The API does not change incidents itself: fusion is their only writer (in the same transaction
as the events and offsets, so a replay gives the same picture). A decision is an event of kind
``verification`` in the log, with the principal as its reporter; fusion applies it in order
with the reports (``hub.fusion.incident.decisions.Decision``). The route produces that
event, then waits a moment (``HUB_API_DECISION_WAIT_S``) for fusion to apply it: 200 with the
result when it did, 202 when it is in the log but not applied yet (it will be; resending is not
needed).

Who may decide: a principal with ``incidents:verify`` that sees the incident; a community only
on incidents its own community reported (a neighbour may see, not rule on, another's incident).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Path, Request, Security
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, Field
from shapely.geometry import mapping, shape
from sqlalchemy import TextClause, text
from starlette.responses import JSONResponse, Response

from geo.tiles import event_key
from hub.api.deps import Access, SettingsDep, get_access
from hub.api.errors import Conflict, Forbidden, NotFound, problem_responses
from hub.api.geojson import absolute_url
from hub.api.params import NO_NUL
from hub.api.producer import publish
from hub.settings import Settings
from hub.store import incident_queries
from schemas.event import DECISION_SOURCE, Event
from schemas.picture import Decision

router = APIRouter(tags=["incidents"])

VerifyAccess = Annotated[Access, Security(get_access, scopes=["incidents:verify"])]
POLL_S = 0.1


class VerificationRequest(BaseModel):
    decision: Decision = Field(
        description="verified: confirmed; refuted: a rumour (it stays visible as refuted)"
    )
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="why")


class SplitRequest(BaseModel):
    event_id: uuid.UUID = Field(description="the member report to take out of the incident")
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="why")


class DecisionResult(BaseModel):
    incident_id: uuid.UUID = Field(description="the incident decided on (its current id)")
    decision: Literal[Decision, "split"]
    event_id: uuid.UUID = Field(description="the verification event in the log")
    applied: bool = Field(description="fusion applied it before this answer")
    split_incident_id: uuid.UUID | None = Field(
        default=None, description="split: the incident the report now forms on its own"
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": DecisionResult, "description": "In the log; fusion applies it shortly"},
    **problem_responses(400, 401, 403, 404, 409, 429, 503),
}


# What shows that fusion applied a decision: its timeline entry; a split, the report pinned in
# its own incident (whose id the answer gives).
_DECIDED = text("SELECT 1 FROM incident_timeline WHERE event_id = :id")
_SPLIT_OUT = text("SELECT incident_id FROM incident_report WHERE event_id = :id AND pinned")


@dataclass(frozen=True)
class Ruling:
    """An operator's decision on the incident the path names, in the making: who decides
    (``access``), and the request it answers."""

    request: Request
    settings: Settings
    access: Access
    incident_id: uuid.UUID

    def target(self) -> incident_queries.IncidentDetail:
        """The incident (a merged id resolves to its survivor), if the caller may rule on
        it."""
        session, reach, incident_id = self.access.session, self.access.incidents, self.incident_id
        found = incident_queries.get_incident(session, incident_id, reach)
        if found is None:
            current = incident_queries.merged_into(session, incident_id, reach)
            if current is not None:
                found = incident_queries.get_incident(session, current, reach)
        if found is None:
            raise NotFound(f"no incident {incident_id}")
        principal = self.access.principal
        if (
            principal.kind == "community"
            and principal.community_id not in found.incident.communities
        ):
            raise Forbidden(
                f"community {principal.community_id!r} did not report this incident: only its "
                "own communities, a department or an admin may rule on it"
            )
        return found

    def event(self, found: incident_queries.IncidentDetail, **properties: Any) -> Event:
        """The verification event: at the incident's place, in its picture, by the
        principal."""
        row = found.incident
        point = shape(orjson.loads(row.geometry)).representative_point()
        principal = self.access.principal
        own = principal.community_id
        return Event.model_validate(
            {
                "event_id": str(uuid.uuid4()),
                "community_id": own if own in row.communities else row.communities[0],
                "source": {
                    "system": DECISION_SOURCE[0],
                    "connector": DECISION_SOURCE[1],
                    "reporter": principal.subject,
                },
                "kind": "verification",
                "category": row.category,
                "event_type": row.event_type,
                "status": row.status,
                "observed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "geometry": mapping(point),
                "properties": {"incident_id": str(row.id), **properties},
            }
        )

    def record(self, event: Event, applied: TextClause, key: uuid.UUID) -> Any:
        """Put the decision in the log, then ``applied``'s answer for ``key`` once fusion
        applied it (None when it has not within the wait)."""
        record = (event_key(event, self.settings.tile_zoom), event.to_json())
        sorry = "the decision was not recorded (sending it again is safe)"
        publish(self.request.app, [record], sorry)
        session = self.access.session
        return _wait(
            self.settings.api_decision_wait_s,
            lambda: session.execute(applied, {"id": key}).scalar_one_or_none(),
        )

    def answer(self, result: DecisionResult) -> Response:
        """200 when fusion applied it, else 202; where the incident is now in ``Location``."""
        request = self.request
        request.state.audit_rows = 1
        here = request.app.url_path_for("get_incident", incident_id=str(result.incident_id))
        return JSONResponse(
            result.model_dump(mode="json"),
            status_code=200 if result.applied else 202,
            headers={"Location": absolute_url(request, self.settings, here)},
        )


def ruling(
    request: Request,
    settings: SettingsDep,
    access: VerifyAccess,
    incident_id: Annotated[uuid.UUID, Path(description="the incident id")],
) -> Ruling:
    # No look-up here: the body is validated (400) before the incident is (404), as ever.
    return Ruling(request, settings, access, incident_id)


RulingDep = Annotated[Ruling, Depends(ruling)]


def _wait(seconds: float, applied: Callable[[], Any]) -> Any:
    """``applied()``'s first truthy answer within ``seconds`` (each poll a fresh snapshot)."""
    deadline = time.monotonic() + seconds
    while True:
        found = applied()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(POLL_S)


def _decision_route(
    action: str, *, name: str, summary: str, description: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``POST /v1/incidents/{incident_id}/<action>``, answered by a :class:`DecisionResult`."""
    return router.post(
        f"/v1/incidents/{{incident_id}}/{action}",
        name=name,
        summary=summary,
        description=description,
        response_model=DecisionResult,
        responses=_RESPONSES,
    )


@_decision_route(
    "verification",
    name="verify_incident",
    summary="Verify or refute an incident",
    description="Records who decided, when and why. A refuted incident stays visible as a "
    "refuted rumour, so that neighbours stop spreading it. Needs `incidents:verify`; a "
    "community may rule only on incidents its own community reported. 200 when fusion applied "
    "the decision before the answer, 202 when it is in the log and about to be applied.",
)
def verify_incident(ruling: RulingDep, body: Annotated[VerificationRequest, Body()]) -> Response:
    found = ruling.target()
    event = ruling.event(found, decision=body.decision, reason=body.reason)
    applied = ruling.record(event, _DECIDED, event.event_id)
    result = DecisionResult(
        incident_id=found.incident.id,
        decision=body.decision,
        event_id=event.event_id,
        applied=applied is not None,
    )
    return ruling.answer(result)


@_decision_route(
    "split",
    name="split_incident",
    summary="Take a wrongly merged report out of an incident",
    description="The report becomes an incident of its own, and correlation never merges it "
    "again; the incident it left is re-clustered from its other members. Needs "
    "`incidents:verify`; a community may split only incidents its own community reported. "
    "409 when the report is not a live member, is already split out, or is the only one.",
)
def split_incident(ruling: RulingDep, body: Annotated[SplitRequest, Body()]) -> Response:
    found = ruling.target()
    live = [r for r in found.reports if not r.cancelled]
    if body.event_id not in {r.event_id for r in live}:
        raise Conflict(f"report {body.event_id} is not a live member of this incident")
    if len(live) < 2:
        raise Conflict("the report is the incident's only one: there is nothing to split")
    event = ruling.event(found, decision="split", event_id=str(body.event_id), reason=body.reason)
    moved = ruling.record(event, _SPLIT_OUT, body.event_id)
    result = DecisionResult(
        incident_id=found.incident.id,
        decision="split",
        event_id=event.event_id,
        applied=moved is not None,
        split_incident_id=moved,
    )
    return ruling.answer(result)
