"""An incident as a CAP 1.2 alert (OASIS, ``urn:oasis:names:tc:emergency:cap:1.2``), built
with lxml: one ``<info>`` per language (zh-CN, en-US), one ``<area>`` with the incident's
polygon (CAP's "lat,lon" pairs) or, for a point, a circle, named after its communities.

Pure: the caller gives the incident's columns, the revision and what it references; the words
come from the message catalogues and the names catalogue (``hub.i18n``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import shapely
from lxml import etree
from shapely.geometry import shape

from hub.i18n import LANGUAGES, Language, Names, translate
from hub.store.cap_alerts import Revision

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE = "application/cap+xml"
STATUS = {"actual": "Actual", "exercise": "Exercise", "test": "Test"}
POINT_RADIUS_KM = 0.1  # a single report's place: a circle of 100 m around it
FIELDS = (  # what the message says: a change of any makes a new revision
    "status", "state", "category", "event_type", "severity", "certainty", "verification",
    "decision_reason", "sources", "reports", "communities", "geometry",
)  # fmt: skip


@dataclass(frozen=True)
class AlertSource:
    """What one alert is made of."""

    incident: Any  # the incident's columns (``incident_queries``), geometry as GeoJSON text
    warning: bool
    neighbours: list[str]
    sender: str
    web: str  # the incident's URL


def is_cancel(source: AlertSource) -> bool:
    """The alert no longer stands: a refuted rumour, or a warning lowered (no live alert any
    more, or the incident closed) that nobody verified."""
    i = source.incident
    if i.verification == "refuted":
        return True
    return i.verification != "verified" and (not source.warning or i.state == "closed")


def publishable(source: AlertSource) -> bool:
    """Whether the incident is told as CAP at all: a warning, or a verified or refuted one."""
    return source.warning or source.incident.verification in ("verified", "refuted")


def digest(source: AlertSource) -> str:
    i = source.incident
    said = {name: getattr(i, name) for name in FIELDS}
    said |= {"warning": source.warning, "neighbours": sorted(source.neighbours)}
    return hashlib.sha256(orjson.dumps(said, option=orjson.OPT_SORT_KEYS)).hexdigest()


def cap_time(at: datetime) -> str:
    """CAP's dateTime: whole seconds, an explicit offset, never "Z"."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat()


def identifier(sender: str, incident_id: Any, revision: int) -> str:
    return f"{sender}:{incident_id}:{revision}"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def build(
    source: AlertSource, latest: Revision, earlier: list[Revision], names: Names
) -> etree._Element:
    """The ``<alert>`` of revision ``latest``, referencing ``earlier``."""
    i = source.incident
    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})  # type: ignore[dict-item]
    _sub(alert, "identifier", identifier(source.sender, latest.incident_id, latest.revision))
    _sub(alert, "sender", source.sender)
    _sub(alert, "sent", cap_time(latest.sent))
    _sub(alert, "status", STATUS[i.status])
    _sub(alert, "msgType", latest.msg_type)
    _sub(alert, "scope", "Public")
    if earlier:
        refs = (f"{source.sender},{identifier(source.sender, r.incident_id, r.revision)},"
                f"{cap_time(r.sent)}" for r in earlier)  # fmt: skip
        _sub(alert, "references", " ".join(refs))
    _sub(alert, "incidents", str(i.id))
    for language in reversed(LANGUAGES):  # zh-CN first: the communities' own language
        _info(alert, source, latest.msg_type, language, names)
    return alert


def _case(source: AlertSource, msg_type: str) -> str:
    """Which words tell it: a refuted rumour, a lowered warning, a warning, a verified one."""
    if source.incident.verification == "refuted":
        return "refuted"
    if msg_type == "Cancel":
        return "cancel"
    return "warning" if source.warning else "verified"


def _info(
    alert: etree._Element, source: AlertSource, msg_type: str, language: Language, names: Names
) -> None:
    i = source.incident
    case = _case(source, msg_type)
    sep = translate(language, "cap.list_separator")
    area = sep.join(names.name("communities", c, language) for c in i.communities)
    event = names.name("event_types", i.event_type, language)
    words = {
        "event": event,
        "area": area,
        "severity": translate(language, f"severity.{i.severity}"),
        "verification": translate(language, f"verification.{i.verification}"),
    }
    info = _sub(alert, "info")
    _sub(info, "language", language)
    _sub(info, "category", i.category)
    _sub(info, "event", event)
    _sub(info, "responseType", "AllClear" if case in ("cancel", "refuted") else "Monitor")
    _sub(info, "urgency", "Past" if case in ("cancel", "refuted") else "Immediate")
    _sub(info, "severity", i.severity)
    _sub(info, "certainty", "Unlikely" if i.verification == "refuted" else i.certainty)
    code = _sub(info, "eventCode")
    _sub(code, "valueName", "hub:event_type")
    _sub(code, "value", i.event_type)
    _sub(info, "onset", cap_time(i.first_observed_at))
    _sub(info, "senderName", translate(language, "cap.sender_name"))
    _sub(info, "headline", translate(language, f"cap.headline.{case}", **words))
    _sub(info, "description", _description(source, language, words, names))
    _sub(info, "instruction", translate(language, f"cap.instruction.{case}"))
    _sub(info, "web", source.web)
    for name, value in (
        ("hub:verification", i.verification),
        ("hub:state", i.state),
        ("hub:sources", str(i.sources)),
        ("hub:reports", str(i.reports)),
    ):
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", name)
        _sub(parameter, "value", value)
    _area(info, source, area)


def _description(
    source: AlertSource, language: Language, words: dict[str, str], names: Names
) -> str:
    i = source.incident
    observed = (i.first_observed_at, i.last_observed_at)
    first, last = (f"{t.astimezone(UTC):%Y-%m-%d %H:%M}" for t in observed)
    parts = [
        translate(language, "cap.description", reports=i.reports, sources=i.sources,
                  first=first, last=last, **words)
    ]  # fmt: skip
    if source.neighbours:
        sep = translate(language, "cap.list_separator")
        flagged = sep.join(names.name("communities", c, language) for c in source.neighbours)
        parts.append(translate(language, "cap.description.flagged", neighbours=flagged))
    if i.decision_reason:
        parts.append(translate(language, "cap.description.reason", reason=i.decision_reason))
    return " ".join(parts) if language == "en-US" else "".join(parts)


def _area(info: etree._Element, source: AlertSource, area: str) -> None:
    element = _sub(info, "area")
    _sub(element, "areaDesc", area or source.incident.event_type)
    polygons, circles = shapes(source.incident.geometry)
    for polygon in polygons:
        _sub(element, "polygon", polygon)
    for circle in circles:
        _sub(element, "circle", circle)
    for community in source.incident.communities:
        geocode = _sub(element, "geocode")
        _sub(geocode, "valueName", "hub:community")
        _sub(geocode, "value", community)


def _pair(lon: float, lat: float) -> str:
    return f"{lat:.6f},{lon:.6f}"


def shapes(geojson: str) -> tuple[list[str], list[str]]:
    """CAP polygons ("lat,lon" pairs, the first repeated last) and circles ("lat,lon km") of a
    GeoJSON geometry: a polygon's outer rings; a point, a small circle; anything else its hull."""
    geom = shape(orjson.loads(geojson))
    if geom.geom_type not in ("Polygon", "MultiPolygon", "Point"):
        geom = geom.convex_hull
    if geom.geom_type == "Point":
        return [], [f"{_pair(geom.x, geom.y)} {POINT_RADIUS_KM}"]
    if geom.geom_type == "LineString":  # a hull of points in a line: the circle around it
        centre = geom.centroid
        km = shapely.length(geom) * 111.32 / 2 + POINT_RADIUS_KM  # degrees to km, generously
        return [], [f"{_pair(centre.x, centre.y)} {km:.3f}"]
    parts = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
    return [" ".join(_pair(x, y) for x, y in p.exterior.coords) for p in parts], []
