"""CAP 1.2 out: an incident as a CAP alert at ``GET /v1/incidents/{id}`` (``Accept:
application/cap+xml`` or ``?f=cap``), through the caller's reach.

A warning, or a verified or refuted incident, is told as CAP; one alert series per incident
(``hub.store.cap_alerts``). Any other incident has no CAP form: ``?f=cap`` (or an ``Accept``
that takes nothing else) answers **406 Not Acceptable**, not 404: the incident exists and the
caller may see it, as its GeoJSON shows; only this representation of it does not exist. Every
alert is checked against the OASIS schema before it leaves, then signed when the operator
configured a key.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from lxml import etree
from starlette.responses import Response

import schemas
from hub.api.cap_sign import load_signer
from hub.api.cap_xml import CAP_MEDIA_TYPE, AlertSource, build, digest, is_cancel, publishable
from hub.api.deps import Access
from hub.api.errors import NotAcceptable
from hub.api.geojson import absolute_url
from hub.errors import HubError
from hub.i18n import load_names
from hub.settings import Settings
from hub.store import cap_alerts

log = logging.getLogger("hub.api.cap")

XSD = Path(schemas.__file__).parent / "cap" / "CAP-v1.2.xsd"
JSON_TYPES = ("application/geo+json", "application/json", "application/*", "*/*")

FormatParam = Annotated[
    Literal["geojson", "cap"] | None,
    Query(
        alias="f",
        description="the representation, over `Accept`: `geojson`, or `cap` (a CAP 1.2 alert: "
        "warnings, verified and refuted incidents only; 406 for any other)",
    ),
]

CAP_RESPONSE: dict[str, Any] = {
    CAP_MEDIA_TYPE: {
        "schema": {"type": "string", "description": "a CAP 1.2 <alert> (OASIS), UTF-8"},
    }
}


class InvalidAlert(HubError):
    """An alert the hub built fails the CAP schema: a bug of the hub, never sent."""


@lru_cache(maxsize=1)
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def _accept(header: str) -> dict[str, float]:
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            ranges[media.lower()] = max(q, ranges.get(media.lower(), 0.0))
    return ranges


def wants_cap(request: Request, f: str | None) -> tuple[bool, bool]:
    """(CAP asked for, nothing else will do). ``f`` decides when given; else ``Accept``: CAP
    when it ranks ``application/cap+xml`` at least as high as any JSON it takes."""
    if f is not None:
        return f == "cap", f == "cap"
    ranges = _accept(request.headers.get("accept", ""))
    cap = ranges.get(CAP_MEDIA_TYPE, 0.0)
    json = max((ranges.get(t, 0.0) for t in JSON_TYPES), default=0.0)
    return cap > 0 and cap >= json, cap > 0 and json == 0


def check(alert: etree._Element) -> None:
    schema = cap_schema()
    if not schema.validate(alert):
        first = str(schema.error_log).splitlines()[:1]
        raise InvalidAlert(f"CAP alert fails CAP-v1.2.xsd: {first}")


def cap_response(
    request: Request, settings: Settings, access: Access, incident: Any, strict: bool
) -> Response | None:
    """The incident's current CAP alert; None when it has none and another form will do."""
    flags = cap_alerts.flags(access.session, incident.id, access.incidents)
    if flags is None:  # gone between the two reads: as absent
        return None
    there = request.app.url_path_for("get_incident", incident_id=str(incident.id))
    source = AlertSource(
        incident,
        flags.warning,
        list(flags.neighbours),
        settings.cap_sender,
        absolute_url(request, settings, there),
    )
    series = cap_alerts.series_of(access.session, [incident.id]).get(incident.id, [])
    if not series and not publishable(source):
        if strict:
            raise NotAcceptable(
                f"incident {incident.id} has no CAP alert: only warnings and verified or "
                "refuted incidents are published as CAP; its GeoJSON is available"
            )
        return None
    alert = alert_of(access, settings, source, series)
    body = etree.tostring(alert, xml_declaration=True, encoding="UTF-8")
    return Response(body, media_type=CAP_MEDIA_TYPE, headers={"Vary": "Accept"})


def alert_of(
    access: Access,
    settings: Settings,
    source: AlertSource,
    series: list[cap_alerts.Revision] | None = None,
    *,
    sign: bool = True,
) -> etree._Element:
    """The incident's alert as of now (a new revision issued when it changed), checked
    against the schema and, with ``sign``, signed when a key is configured."""
    series = cap_alerts.issue(
        access.session, source.incident.id, digest(source), is_cancel(source), series
    )
    latest, earlier = cap_alerts.current(series)
    alert = build(source, latest, earlier, load_names(settings.names_extra))
    check(alert)
    if sign and settings.cap_signing_key is not None and settings.cap_signing_cert is not None:
        alert = load_signer(settings.cap_signing_key, settings.cap_signing_cert).sign(alert)
    return alert
