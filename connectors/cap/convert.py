"""One CAP alert -> one hub event, or a reject naming the element or rule that failed.

- ``event_id`` = uuid5(sender, identifier): the same alert from any feed is one event, and a
  ``<references>`` entry (``sender,identifier,sent``) names the event it updates or cancels.
- ``msgType`` Alert -> kind ``alert``; Update -> kind ``alert`` with ``refs`` (an Update that
  names nothing is rejected); Cancel -> kind ``cancel`` with ``refs``; Ack/Error are not alerts.
- ``status`` Actual/Exercise/Test -> ``actual``/``exercise``/``test``; System and Draft are
  not published to the picture (rejected, with that reason).
- The preferred ``<info>`` (``[event] languages``) gives category, urgency, severity,
  certainty and event type; every ``<info>`` is kept in ``properties.info``.
- The geometry is every ``<area>`` of every ``<info>`` placed (``connectors.cap.geometry``).
- A valid signature names the signer in ``properties.signer`` (the v1 contract has no
  ``source.signer``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree
from pydantic import ValidationError

from connectors.cap import geometry as geo
from connectors.cap.mapping import CapMapping
from connectors.cap.signature import SignatureProblem, Trust, signatures, verify
from connectors.cap.xmldoc import Found, schema_problems
from connectors.mapping import URGENCIES, canonical_word, normalise_event_type
from schemas.event import Event

# Fixed namespace of CAP event ids: uuid5(CAP_NAMESPACE, "sender\x1fidentifier"). Never change
# it, or updates and cancels would no longer find the alerts they name.
CAP_NAMESPACE = uuid.UUID("0c5d3b0e-5a43-4f0e-9d36-5b1c0a4cf2a1")
STATUSES = {"Actual": "actual", "Exercise": "exercise", "Test": "test"}
KINDS = {"Alert": "alert", "Update": "alert", "Cancel": "cancel"}
MAX_REFS = 100  # the contract's limit


def cap_event_id(sender: str, identifier: str) -> uuid.UUID:
    return uuid.uuid5(CAP_NAMESPACE, f"{sender}\x1f{identifier}")


class AlertReject(Exception):  # a verdict on an alert, not an error of the program
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Converted:
    event: Event
    notes: tuple[str, ...] = ()


class AlertConverter:
    def __init__(self, mapping: CapMapping) -> None:
        self.mapping = mapping
        sig = mapping.signatures
        self.trust = Trust(sig.trust_anchors, sig.allow_sha1) if sig.trust_anchors else None

    def convert(self, found: Found) -> Converted:
        """The event of one alert; raises ``AlertReject``."""
        alert, ns = found.alert, etree.QName(found.alert).namespace or ""
        problems = schema_problems(alert, ns)
        if problems:
            raise AlertReject(f"alert fails the CAP {found.version} XSD", problems)
        a = _Reader(alert, ns)
        sent_text, sent = _sent(a.text("sent"))
        notes: list[str] = []
        signer = self._signer(alert, sent, notes)
        status = STATUSES.get(a.text("status"))
        if status is None:
            raise AlertReject(f"alert/status {a.text('status')} is not published to the picture")
        msg_type = a.text("msgType")
        kind = KINDS.get(msg_type)
        if kind is None:
            raise AlertReject(f"alert/msgType {msg_type} is not an alert")
        refs = _refs(a.text("references"), msg_type, notes)
        infos = a.children("info")
        if not infos:
            raise AlertReject("alert/info missing", "the hub needs an <info> to know what happened")
        primary = self._primary(infos, ns)
        geometry, place_props = self._geometry(infos, ns)
        props = {
            "cap": _alert_properties(a, found),
            "info": [_info_properties(_Reader(i, ns)) for i in infos],
            **place_props,
        }
        if signer is not None:
            props["signer"] = signer
        try:
            event = Event(
                event_id=cap_event_id(a.text("sender"), a.text("identifier")),
                source={
                    "system": self.mapping.source.system,
                    "connector": self.mapping.source.connector,
                },
                kind=kind,
                status=status,
                observed_at=sent_text,
                geometry=geometry,
                refs=refs,
                properties=props,
                **self._fields(primary),
            )
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise AlertReject("invalid event", detail) from None
        return Converted(event, tuple(notes))

    def _signer(self, alert: etree._Element, sent: datetime, notes: list[str]) -> str | None:
        signed = bool(signatures(alert))
        if self.trust is None:
            if signed:
                notes.append("signature not checked (no [signatures] trust_anchors)")
            return None
        if not signed:
            if self.mapping.signatures.required:
                raise AlertReject("alert/Signature missing", "[signatures] required = true")
            return None
        try:
            return verify(alert, self.trust, sent)
        except SignatureProblem as exc:
            raise AlertReject("alert/Signature invalid", str(exc)) from None

    def _primary(self, infos: list[etree._Element], ns: str) -> _Reader:
        readers = [_Reader(i, ns) for i in infos]
        for wanted in (w.casefold() for w in self.mapping.event.languages):
            for r in readers:
                lang = (r.text("language") or "en-US").casefold()
                if lang == wanted or lang.split("-")[0] == wanted:
                    return r
        return readers[0]

    def _fields(self, info: _Reader) -> dict[str, str]:
        certainty = info.text("certainty")
        certainty = "Likely" if certainty == "Very Likely" else certainty  # CAP 1.0/1.1 word
        return {
            "category": info.text("category") or "Other",
            "urgency": canonical_word("urgency", info.text("urgency")) or URGENCIES[-1],
            "severity": canonical_word("severity", info.text("severity")) or "Unknown",
            "certainty": canonical_word("certainty", certainty) or "Unknown",
            "event_type": self._event_type(info),
        }

    def _event_type(self, info: _Reader) -> str:
        spec = self.mapping.event
        for code in info.children("eventCode"):
            c = _Reader(code, info.ns)
            found = spec.event_codes.get(f"{c.text('valueName')}:{c.text('value')}")
            if found:
                return found
        text = info.text("event")
        folded = {k.casefold(): v for k, v in spec.event_types.items()}
        if text.casefold() in folded:
            return folded[text.casefold()]
        if spec.unmapped == "normalise" and text.isascii():
            return normalise_event_type(text) or spec.default
        return spec.default

    def _geometry(
        self, infos: list[etree._Element], ns: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        placed = geo.Placed()
        areas = [a for i in infos for a in _Reader(i, ns).children("area")]
        if not areas:
            raise AlertReject("alert/info/area missing", "no <area> in any <info>")
        try:
            for area in areas:
                self._place(_Reader(area, ns), placed)
        except geo.AreaProblem as exc:
            raise AlertReject("alert/info/area unreadable", str(exc)) from None
        geometry = placed.geometry()
        if geometry is None:
            seen = ", ".join(placed.geocodes_unknown[:5]) or "none"
            raise AlertReject(
                "no placeable alert/info/area",
                f"no polygon, no circle, no geocode of the mapping's [geocode] table "
                f"(geocodes: {seen})",
            )
        props: dict[str, Any] = {
            "area_desc": list(dict.fromkeys(_Reader(a, ns).text("areaDesc") for a in areas))
        }
        if placed.circles:
            props["circles"] = placed.circles
        return geometry, props

    def _place(self, area: _Reader, placed: geo.Placed) -> None:
        segments = self.mapping.area.circle_segments
        for p in filter(None, area.texts("polygon")):  # an empty element says nothing
            placed.polygons.append(geo.polygon(p))
        for c in filter(None, area.texts("circle")):
            centre, radius, ring = geo.circle(c, segments)
            placed.circles.append({"center": list(centre), "radius_km": radius})
            if ring is None:
                placed.points.append(centre)
            else:
                placed.polygons.append(ring)
        for code in area.children("geocode"):
            g = _Reader(code, area.ns)
            name, value = g.text("valueName"), g.text("value")
            where = geo.place_geocode(self.mapping.geocode, name, value)
            if where is None:
                placed.geocodes_unknown.append(f"{name}={value}")
            elif where.radius_km is None:
                placed.points.append((where.lon, where.lat))
            else:
                centre = (where.lon, where.lat)
                placed.circles.append(
                    {
                        "center": list(centre),
                        "radius_km": where.radius_km,
                        "geocode": f"{name}={value}",
                    }
                )
                placed.polygons.append(geo.circle_ring(centre, where.radius_km, segments))


class _Reader:
    """Child texts of one CAP element (in the alert's namespace)."""

    def __init__(self, element: etree._Element, ns: str) -> None:
        self.element, self.ns = element, ns

    def children(self, name: str) -> list[etree._Element]:
        return self.element.findall(f"{{{self.ns}}}{name}")

    def texts(self, name: str) -> list[str]:
        return [(c.text or "").strip() for c in self.children(name)]

    def text(self, name: str) -> str:
        found = self.element.find(f"{{{self.ns}}}{name}")
        return "" if found is None else (found.text or "").strip()


def _sent(text: str) -> tuple[str, datetime]:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AlertReject("alert/sent unreadable", repr(text)) from None
    if when.tzinfo is None:
        raise AlertReject("alert/sent without offset", repr(text))
    return text, when


def _refs(text: str, msg_type: str, notes: list[str]) -> list[uuid.UUID]:
    entries = text.split()
    if msg_type in ("Update", "Cancel") and not entries:
        raise AlertReject(
            "alert/references empty",
            f"msgType {msg_type} must name the alerts it {msg_type.lower()}s",
        )
    refs = []
    for entry in entries:
        parts = entry.split(",")
        if len(parts) != 3 or not all(parts):
            raise AlertReject(
                "alert/references malformed", f"{entry!r} is not sender,identifier,sent"
            )
        refs.append(cap_event_id(parts[0], parts[1]))
    if len(refs) > MAX_REFS:
        notes.append(f"references beyond {MAX_REFS} dropped")
    return list(dict.fromkeys(refs))[:MAX_REFS]


def _alert_properties(a: _Reader, found: Found) -> dict[str, Any]:
    props: dict[str, Any] = {"version": found.version, "found_in": found.where}
    for name in (
        "identifier",
        "sender",
        "sent",
        "status",
        "msgType",
        "source",
        "scope",
        "restriction",
        "addresses",
        "note",
        "references",
        "incidents",
    ):
        value = a.text(name)
        if value:
            props[name] = value
    codes = a.texts("code")
    if codes:
        props["code"] = codes
    return props


_INFO_TEXTS = (
    "language",
    "event",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
)


def _info_properties(info: _Reader) -> dict[str, Any]:
    props: dict[str, Any] = {n: v for n in _INFO_TEXTS if (v := info.text(n))}
    props["category"] = info.texts("category")
    response = info.texts("responseType")
    if response:
        props["responseType"] = response
    for group in ("eventCode", "parameter"):
        pairs = [_Reader(c, info.ns) for c in info.children(group)]
        if pairs:
            props[group] = {p.text("valueName"): p.text("value") for p in pairs}
    return props
