"""CAP connector, without the broker: every shared sample maps or is rejected with a reason
naming the element or rule; hostile documents read no file and reach no server; the mapping
of status, msgType, languages and areas; folders and feeds read each document once."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.cap.connector import CapRun
from connectors.cap.convert import AlertConverter, AlertReject, cap_event_id
from connectors.cap.geometry import EARTH_RADIUS_KM, circle_ring
from connectors.cap.geometry import polygon as cap_polygon
from connectors.cap.mapping import CapMappingError, load_cap_mapping
from connectors.cap.source import (
    CapCursor,
    FeedPoller,
    entry_links,
    folder_documents,
    mark_done,
)
from connectors.cap.xmldoc import DocumentError, alerts_in, parse
from connectors.report import ConnectorReport
from connectors.run import RunOptions
from connectors.settings import ConnectorSettings
from schemas.event import Polygon
from tests.cap_helpers import (
    CAP_DATA,
    FileWatch,
    alert_xml,
    area_xml,
    convert,
    info_xml,
    mapping,
    recording_server,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "mappings" / "cap-alerts.toml"
NO_AREA = "reject no placeable alert/info/area"
XSD12 = "reject alert fails the CAP 1.2 XSD"

# Every file of valid/, bundles/, invalid/ and hostile/: the outcome of each alert in order
# ("event <event_type>", "reject <reason>"), or "document <reason>" for a whole document.
EXPECTED: dict[str, list[str]] = {
    "valid/43b080713727.cap": [NO_AREA],  # HSAS advisory: areaDesc "U.S. nationwide" only
    "valid/CanadaNaad.xml": ["event weather"],
    "valid/KAR0-0306112239-SW.cap": ["event child_abduction"],  # SAME geocode, mapped
    "valid/NOAA_MultiplePolygons.xml": ["event hurricane_warning"],
    "valid/australia.cap": ["event fire"],
    "valid/australia_bom.cap": [NO_AREA],  # an ISO country geocode only
    "valid/canada.cap": ["event thunderstorm"],
    "valid/canada_signed.cap": ["event snowfall"],
    "valid/earthquake-iso8859-1.cap": ["event earthquake"],
    "valid/earthquake.cap": ["event earthquake"],
    "valid/iceland_met_office.cap": ["event weather_warning_wind"],  # the English <info>
    "valid/mexico.xml": ["event tropical_cyclone"],
    "valid/no_info_tag.cap": ["reject alert/info missing"],
    "valid/no_optional_fields.cap": ["reject alert/info missing"],
    "valid/nws_flash_flood_watch.cap": ["event flash_flood"],  # SAME:FFA eventCode
    "valid/ph.cap": ["event tropical_cyclone_alert"],
    "valid/taiwan.cap": ["event reservoir_release"],  # Taiwan geocode, mapped
    "valid/thunderstorm.cap": ["event severe_thunderstorm"],
    "valid/wcatwc-warning.cap": ["event tsunami_warning"],
    "valid/weather.cap": [NO_AREA],  # FIPS6 codes of New Mexico, not in the table
    "bundles/bushfire_valid.edxlde": ["event other", *["event fire"] * 6],
    "bundles/rfs.xml": ["event other_non_urgent_alerts"],
    "bundles/smhi.se.alerts.cap": [NO_AREA] * 17,  # areaDesc only
    "invalid/bushfire_invalid.edxlde": [
        "event other",
        XSD12,  # no identifier
        XSD12,  # urgency Foobar
        *["event fire"] * 4,
    ],
    "invalid/canada_errors.cap": ["reject alert/references empty"],
    "invalid/earthquake_signed.cap": ["event earthquake"],  # the signature set aside for the XSD
    "invalid/invalid.cap": [XSD12],  # no <scope>
    "invalid/invalid_xmlns.cap": ["document not a CAP document"],
    "invalid/noaa_errors.cap": ["reject alert fails the CAP 1.1 XSD"],
    "invalid/pelmorex.atom": ["document not well-formed XML"],
    "invalid/sweden.cap": [XSD12],
    "hostile/xee.atom": ["document DOCTYPE refused"],
    "hostile/xee.cap": ["document DOCTYPE refused"],
}


def outcomes(path: Path, converter: AlertConverter) -> list[str]:
    try:
        found = alerts_in(parse(path.read_bytes()))
    except DocumentError as exc:
        return [f"document {exc.reason}"]
    out = []
    for item in found:
        try:
            out.append(f"event {converter.convert(item).event.event_type}")
        except AlertReject as exc:
            assert exc.detail, f"{path.name}: a reject says why ({exc.reason})"
            out.append(f"reject {exc.reason}")
    return out


def test_every_shared_sample_maps_or_is_rejected_with_its_reason() -> None:
    listed = {
        str(p.relative_to(CAP_DATA))
        for d in ("valid", "bundles", "invalid", "hostile")
        for p in (CAP_DATA / d).iterdir()
    }
    assert listed == set(EXPECTED), "the list names every sample file"
    converter = AlertConverter(load_cap_mapping(SHIPPED))
    got = {name: outcomes(CAP_DATA / name, converter) for name in EXPECTED}
    assert got == EXPECTED


def test_polygon_order_circle_and_geocode() -> None:
    area = area_xml(polygon="37.76,-122.421 37.76,-122.415 37.764,-122.415 37.76,-122.421")
    geometry = convert(alert_xml("p", infos=[info_xml(area=area)])).event.geometry
    assert geometry.type == "Polygon"
    assert geometry.coordinates[0][0] == (-122.421, 37.76)  # CAP lat,lon -> GeoJSON lon,lat

    event = convert(
        alert_xml("c", infos=[info_xml(area=area_xml(circle="37.762,-122.418 2.5"))])
    ).event
    assert isinstance(event.geometry, Polygon)
    ring = event.geometry.coordinates[0]
    assert len(ring) == 33 and ring[0] == ring[-1]
    for vertex in ring:  # every vertex 2.5 km from the centre
        assert abs(_km((-122.418, 37.762), (vertex[0], vertex[1])) - 2.5) < 0.01
    assert event.properties["circles"] == [{"center": [-122.418, 37.762], "radius_km": 2.5}]

    table = {"geocode": {"SAME": {"006075": {"lon": -122.42, "lat": 37.77}}}}
    event = convert(
        alert_xml("g", infos=[info_xml(area=area_xml(geocode=("SAME", "006075")))]),
        mapping(**table),
    ).event
    assert event.geometry.type == "Point" and event.geometry.coordinates == (-122.42, 37.77)
    with pytest.raises(AlertReject, match="no placeable") as caught:
        convert(alert_xml("u", infos=[info_xml(area=area_xml(geocode=("SAME", "999999")))]))
    assert "SAME=999999" in caught.value.detail
    with pytest.raises(AlertReject, match="area/polygon"):
        convert(
            alert_xml("b", infos=[info_xml(area=area_xml(polygon="-122.42,37.76 1,2 3,4 5,6"))])
        )


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2, dl = math.radians(a[1]), math.radians(b[1]), math.radians(b[0] - a[0])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def test_status_msgtype_references_and_languages() -> None:
    first = convert(alert_xml("a1")).event
    assert first.event_id == cap_event_id("test@hub.example", "a1") and first.kind == "alert"
    update = convert(
        alert_xml(
            "a2", msg_type="Update", references="test@hub.example,a1,2026-12-01T10:00:00-08:00"
        )
    ).event
    assert update.kind == "alert" and update.refs == [first.event_id]
    cancel = convert(
        alert_xml(
            "a3", msg_type="Cancel", references="test@hub.example,a1,2026-12-01T10:00:00-08:00"
        )
    ).event
    assert cancel.kind == "cancel" and cancel.refs == [first.event_id]
    assert convert(alert_xml("x", status="Exercise")).event.status == "exercise"
    assert convert(alert_xml("t", status="Test")).event.status == "test"
    for status in ("System", "Draft"):
        with pytest.raises(AlertReject, match=f"alert/status {status}"):
            convert(alert_xml("s", status=status))
    with pytest.raises(AlertReject, match="alert/references empty"):
        convert(alert_xml("e", msg_type="Update", references=""))
    with pytest.raises(AlertReject, match="alert/references empty"):
        convert(alert_xml("e", msg_type="Cancel"))
    with pytest.raises(AlertReject, match="alert/msgType Ack"):
        convert(alert_xml("k", msg_type="Ack", references="a,b,2026-12-01T10:00:00Z"))
    with pytest.raises(AlertReject, match="alert/info missing"):
        convert(alert_xml("n", infos=[]))
    infos = [
        info_xml(language="fr-CA", category="Met", event="Orage"),
        info_xml(language="en-CA", event="Thunderstorm", category="Met", severity="Moderate"),
    ]
    event = convert(alert_xml("l", infos=infos), mapping(event={"languages": ["en"]})).event
    assert event.event_type == "thunderstorm" and event.severity == "Moderate"
    assert [i["language"] for i in event.properties["info"]] == ["fr-CA", "en-CA"]
    assert event.properties["info"][0]["headline"] == "Orage (fr-CA)"
    default = convert(alert_xml("l2", infos=infos)).event  # no preference: the first <info>
    assert default.event_type == "orage"


def test_mapping_is_strict_with_did_you_mean(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text(
        '[source]\nsystem = "x"\n[signatures]\ntrust_anchor = "ca.pem"\nrequired = true\n'
    )
    with pytest.raises(CapMappingError) as caught:
        load_cap_mapping(bad)
    assert "did you mean 'trust_anchors'" in str(caught.value)
    bad.write_text('[source]\nsystem = "x"\n[signatures]\ntrust_anchors = "absent.pem"\n')
    with pytest.raises(CapMappingError, match=r"absent\.pem"):
        load_cap_mapping(bad)


def test_hostile_documents_read_no_file_and_reach_no_server(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    with recording_server() as server:
        hostile = [
            f'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="{server.url}/xsl"?>\n'
            f'<!DOCTYPE alert SYSTEM "{server.url}/dtd" [\n'
            f'  <!ENTITY xxe SYSTEM "file://{secret}">\n'
            f'  <!ENTITY % remote SYSTEM "{server.url}/pe">\n  %remote;\n]>\n'
            + alert_xml("h1", infos=[info_xml(event="Fire &xxe;")]).split("\n", 1)[1],
            # No DOCTYPE: an XInclude of the file and of the server, never processed.
            alert_xml("h2").replace(
                "<scope>Public</scope>",
                '<scope>Public</scope><x xmlns:xi="http://www.w3.org/2001/XInclude">'
                f'<xi:include href="file://{secret}" parse="text"/>'
                f'<xi:include href="{server.url}/xi"/></x>',
            ),
        ]
        folder = tmp_path / "drop"
        folder.mkdir()
        for n, doc in enumerate(hostile):
            (folder / f"h{n}.cap").write_text(doc)
        watch = FileWatch(secret)
        try:
            report = ConnectorReport(str(folder), "cap-test", "")
            run = CapRun(mapping(), ConnectorSettings(state_dir=tmp_path), RunOptions())
            events = run._convert(list(folder_documents(folder, CapCursor())), report, None)
            assert not watch.touched(), "the parser opened the file an entity names"
            assert server.hits == [], "the parser reached the network"
            secret.read_text()  # the watchers work: our own read is seen ...
            assert watch.touched()
        finally:
            watch.close()
        server.routes["/probe"] = (200, {}, b"ok")
        assert httpx.get(f"{server.url}/probe").status_code == 200
    assert [h[0] for h in server.hits] == ["/probe"]  # ... and so is a real request
    assert events == [] and report.rejected == 2
    assert set(report.reasons) == {"DOCTYPE refused", "alert fails the CAP 1.2 XSD"}


def test_folder_reads_each_file_once(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.cap").write_text(alert_xml("f1"))
    (folder / ".hidden.cap").write_text(alert_xml("f2"))
    cursor = CapCursor()
    docs = list(folder_documents(folder, cursor))
    assert [Path(d.name).name for d in docs] == ["a.cap"]
    for d in docs:
        mark_done(cursor, d)
    cursor.save(tmp_path / "c.json")
    again = CapCursor.load(tmp_path / "c.json")
    assert list(folder_documents(folder, again)) == []
    (folder / "a.cap").write_text(alert_xml("f1", status="Exercise"))  # new content: read again
    assert len(list(folder_documents(folder, again))) == 1


def test_feed_conditional_get_and_links(tmp_path: Path) -> None:
    with recording_server() as server:
        feed = (
            '<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            f'<entry><id>1</id><link href="{server.url}/a1.cap"'
            ' type="application/cap+xml"/></entry>'
            '<entry><id>2</id><link href="file:///etc/passwd"/></entry>'
            f'<entry><id>3</id><link href="/a2.cap"/></entry></feed>'
        ).encode()
        server.routes["/feed"] = (
            200,
            {"ETag": '"v1"', "Content-Type": "application/atom+xml"},
            feed,
        )
        server.routes["/a1.cap"] = (200, {}, alert_xml("feed1").encode())
        server.routes["/a2.cap"] = (200, {}, alert_xml("feed2").encode())
        assert entry_links(feed, f"{server.url}/feed") == [
            f"{server.url}/a1.cap",
            f"{server.url}/a2.cap",
        ]
        cursor = CapCursor()
        with httpx.Client() as client:
            first = list(FeedPoller(client, cursor).poll(f"{server.url}/feed"))
            assert [d.name.rsplit("/", 1)[-1] for d in first] == ["feed", "a1.cap", "a2.cap"]
            assert cursor.feeds[f"{server.url}/feed"]["etag"] == '"v1"'
            for doc in first:
                mark_done(cursor, doc)
            again = list(FeedPoller(client, cursor).poll(f"{server.url}/feed"))
            assert again == []  # 304: nothing fetched but the feed
            assert server.hits[-1] == ("/feed", server.hits[-1][1])
            assert server.hits[-1][1].get("If-None-Match") == '"v1"'
            # The feed changes: one new entry; the alerts it still lists are not fetched again.
            newer = feed.replace(
                b"</feed>", b'<entry><id>4</id><link href="/a3.cap"/></entry></feed>'
            )
            server.routes["/feed"] = (200, {"ETag": '"v2"'}, newer)
            server.routes["/a3.cap"] = (200, {}, alert_xml("feed3").encode())
            hits = len(server.hits)
            third = list(FeedPoller(client, cursor).poll(f"{server.url}/feed"))
        assert [d.name.rsplit("/", 1)[-1] for d in third] == ["feed", "a3.cap"]
        assert [path for path, _ in server.hits[hits:]] == ["/feed", "/a3.cap"]
        assert not any("passwd" in path for path, _ in server.hits)


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-80, 80),
    lon=st.floats(-180, 180),
    radius=st.floats(0.01, 500),
    segments=st.integers(8, 64),
)
def test_circle_ring_vertices_lie_on_the_circle(
    lat: float, lon: float, radius: float, segments: int
) -> None:
    ring = circle_ring((lon, lat), radius, segments)
    assert len(ring) == segments + 1 and ring[0] == ring[-1]
    for x, y in ring:
        assert -180 <= x <= 180 and -90 <= y <= 90
        assert abs(_km((lon, lat), (x, y)) - radius) < 1e-3 * radius + 1e-3


@given(
    pairs=st.lists(
        st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=3, max_size=12, unique=True
    )
)
def test_cap_polygons_swap_to_lon_lat_and_close(pairs: list[tuple[float, float]]) -> None:
    text = " ".join(f"{lat!r},{lon!r}" for lat, lon in pairs)
    ring = cap_polygon(text)
    assert ring[: len(pairs)] == [(lon, lat) for lat, lon in pairs]
    assert ring[0] == ring[-1]
