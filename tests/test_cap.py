"""CAP 1.2 out, the Atom feed of warnings and the languages, against the real pipeline (broker,
fusion, PostGIS): a received flood alert in the Mission becomes a warning, its CAP alert an
``Alert``; a resident's report joining it an ``Update``; the alert cancelled a ``Cancel``, each
referencing the earlier ones. Every alert the tests see is checked against the OASIS XSD.

The place is real (17th & Folsom, a known flooding spot in the Mission); the alert and report
are synthetic. Excelsior lies more than 3 km away: out of reach of a Mission warning.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from lxml import etree
from signxml import InvalidSignature, XMLVerifier

from hub.api.factory import create_app
from hub.settings import Settings
from tests.auth_helpers import signed_in
from tests.fusion_helpers import GENEROUS_LIMITS, own_stream
from tests.test_incidents import incidents_of, run

CAP = "urn:oasis:names:tc:emergency:cap:1.2"
NS = {"cap": CAP}
XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "schemas/cap/CAP-v1.2.xsd")))
T = datetime.fromisoformat("2036-05-04T07:00:00-07:00")  # this module's own time window
FOLSOM_17TH = (-122.4148, 37.7634)
FOLSOM_17TH_N = (-122.4148, 37.7642)
HAN = re.compile(r"[\u4e00-\u9fff]")


def _event(kind: str, point: tuple[float, float], minutes: float, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "community_id": "Mission",
        "source": {"system": f"cap-test-{kind}", "connector": "test", "reporter": kind},
        "kind": kind,
        "category": "Met",
        "severity": "Severe",
        "certainty": "Likely",
        "event_type": "flood",
        "observed_at": (T + timedelta(minutes=minutes)).isoformat(),
        "geometry": {"type": "Point", "coordinates": list(point)},
        **extra,
    }


def _certificate(directory: Path) -> tuple[Path, Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub cap test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "cap.key", directory / "cap.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path.write_text(cert_pem)
    return key_path, cert_path, cert_pem


@dataclass
class World:
    settings: Settings
    http: TestClient  # admin, unsigned alerts
    signed: TestClient  # admin of an app that signs
    far: TestClient  # a community out of reach
    cert_pem: str
    alert: dict[str, Any]
    incident: str


@pytest.fixture(scope="module")
def world(
    base_settings: Settings, sf_communities: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    settings = own_stream(base_settings, "cap", fusion_incidents=True, **GENEROUS_LIMITS)
    key, cert, cert_pem = _certificate(tmp_path_factory.mktemp("cap"))
    signing = settings.model_copy(update={"cap_signing_key": key, "cap_signing_cert": cert})
    alert = _event("alert", FOLSOM_17TH, 0)
    run(settings, [alert])
    incident = str(incidents_of(settings, [alert])[alert["event_id"]]["id"])
    app, signed_app = create_app(settings), create_app(signing)
    with (
        signed_in(app, settings, "admin") as http,
        signed_in(signed_app, signing, "admin") as signed,
        signed_in(app, settings, "community", community_id="Excelsior") as far,
    ):
        yield World(settings, http, signed, far, cert_pem, alert, incident)


def cap_of(http: TestClient, incident: str, **headers: str) -> etree._Element:
    answer = http.get(f"/v1/incidents/{incident}", params={"f": "cap"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/cap+xml")
    root = etree.fromstring(answer.content)
    assert XSD.validate(root), XSD.error_log
    return root


def text(root: etree._Element, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


def test_series_alert_update_cancel(world: World) -> None:
    first = cap_of(world.http, world.incident)
    assert text(first, "cap:msgType") == "Alert"
    identifier = text(first, "cap:identifier")
    assert identifier == f"community-risk-hub:{world.incident}:1"
    assert first.find("cap:references", NS) is None
    assert text(first, "cap:status") == "Actual"
    # Read again, unchanged: the same message (identifier and sent), not a new revision.
    again = cap_of(world.http, world.incident, accept="application/cap+xml")
    assert text(again, "cap:identifier") == identifier
    assert text(again, "cap:sent") == text(first, "cap:sent")

    resident = _event("incident", FOLSOM_17TH_N, 20)
    run(world.settings, [resident])
    update = cap_of(world.http, world.incident)
    assert text(update, "cap:msgType") == "Update"
    assert text(update, "cap:identifier").endswith(":2")
    first_ref = f"community-risk-hub,{identifier},{text(first, 'cap:sent')}"
    assert text(update, "cap:references") == first_ref

    cancel = _event("cancel", FOLSOM_17TH, 40, refs=[world.alert["event_id"]])
    run(world.settings, [cancel])
    cancelled = cap_of(world.http, world.incident)
    assert text(cancelled, "cap:msgType") == "Cancel"
    refs = text(cancelled, "cap:references").split()
    assert refs == [first_ref, f"community-risk-hub,{text(update, 'cap:identifier')},"
                    f"{text(update, 'cap:sent')}"]  # fmt: skip
    assert {text(i, "cap:urgency") for i in cancelled.findall("cap:info", NS)} == {"Past"}


def test_infos_in_chinese_and_english_with_area(world: World) -> None:
    root = cap_of(world.http, world.incident)
    infos = {text(i, "cap:language"): i for i in root.findall("cap:info", NS)}
    assert set(infos) == {"zh-CN", "en-US"}
    zh, en = infos["zh-CN"], infos["en-US"]
    assert text(zh, "cap:event") == "洪涝" and text(en, "cap:event") == "Flood"
    for field in ("cap:headline", "cap:description", "cap:instruction"):
        assert HAN.search(text(zh, field)) and not HAN.search(text(en, field))
    assert "米慎区" in text(zh, "cap:area/cap:areaDesc")
    assert text(en, "cap:area/cap:areaDesc") == "Mission"
    circle = text(en, "cap:area/cap:circle")
    lat, lon = (float(v) for v in circle.split()[0].split(","))
    assert abs(lat - FOLSOM_17TH[1]) < 0.01 and abs(lon - FOLSOM_17TH[0]) < 0.01  # lat first
    params = {
        text(p, "cap:valueName"): text(p, "cap:value") for p in en.findall("cap:parameter", NS)
    }
    assert params["hub:verification"] in ("reported", "corroborated")


def test_signed_alert_verifies_and_tampered_does_not(world: World) -> None:
    answer = world.signed.get(f"/v1/incidents/{world.incident}?f=cap")
    assert answer.status_code == 200
    root = etree.fromstring(answer.content)
    assert XSD.validate(root), XSD.error_log
    assert root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None
    verified = XMLVerifier().verify(answer.content, x509_cert=world.cert_pem)
    assert not isinstance(verified, list) and verified.signed_xml is not None
    assert text(verified.signed_xml, "cap:identifier") == text(root, "cap:identifier")
    tampered = answer.content.replace(b"Mission</cap:areaDesc>", b"Excelsior</cap:areaDesc>")
    tampered = tampered.replace(b"Mission</areaDesc>", b"Excelsior</areaDesc>")
    assert tampered != answer.content
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(tampered, x509_cert=world.cert_pem)


def test_plain_incident_has_no_cap_form(world: World) -> None:
    plain = _event("incident", (-122.4310, 37.7280), 300)  # Glen Park / Excelsior side
    plain |= {"community_id": "Glen Park", "category": "Fire", "event_type": "fire"}
    run(world.settings, [plain])
    incident = str(incidents_of(world.settings, [plain])[plain["event_id"]]["id"])
    answer = world.http.get(f"/v1/incidents/{incident}", params={"f": "cap"})
    assert answer.status_code == 406
    assert answer.headers["content-type"] == "application/problem+json"
    assert "CAP" in answer.json()["detail"]
    # An Accept that also takes GeoJSON gets GeoJSON.
    both = "application/cap+xml, application/geo+json;q=0.5"
    answer = world.http.get(f"/v1/incidents/{incident}", headers={"Accept": both})
    assert answer.status_code == 200 and answer.json()["type"] == "Feature"


def test_out_of_reach_is_404_in_the_callers_language(world: World) -> None:
    answer = world.far.get(
        f"/v1/incidents/{world.incident}?f=cap", headers={"Accept-Language": "zh-CN,en;q=0.5"}
    )
    assert answer.status_code == 404
    assert answer.json()["title"] == "未找到"
    assert answer.headers["content-language"] == "zh-CN"
    english = world.far.get(f"/v1/incidents/{world.incident}?f=cap")
    assert english.json()["title"] == "Not Found"


def test_warnings_feed(world: World, base_settings: Settings) -> None:
    fresh = _event("alert", (-122.3895, 37.7700), 600)  # Mission Bay, a new warning
    fresh["community_id"] = "Mission Bay"
    run(world.settings, [fresh])
    incident = str(incidents_of(world.settings, [fresh])[fresh["event_id"]]["id"])
    answer = world.http.get("/v1/feeds/warnings.atom", headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/atom+xml")
    assert "private" in answer.headers["cache-control"]
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.bozo_exception
    assert HAN.search(feed.feed.title)
    entry = next(e for e in feed.entries if e.id == f"urn:uuid:{incident}")
    assert HAN.search(entry.title)
    cap_link = next(link for link in entry.links if link.type == "application/cap+xml")
    alert = etree.fromstring(world.http.get(cap_link.href).content)
    assert XSD.validate(alert), XSD.error_log
    assert text(alert, "cap:identifier") == entry.content[0].value
    # Unchanged: 304 with the same ETag; the cancelled Mission warning is not listed.
    etag = answer.headers["etag"]
    again = world.http.get(
        "/v1/feeds/warnings.atom", headers={"If-None-Match": etag, "Accept-Language": "zh-CN"}
    )
    assert again.status_code == 304 and again.headers["etag"] == etag
    assert all(e.id != f"urn:uuid:{world.incident}" for e in feed.entries)
    english = feedparser.parse(world.http.get("/v1/feeds/warnings.atom").content)
    assert not HAN.search(english.feed.title)
    # Out of reach: Excelsior's feed holds neither warning.
    far = feedparser.parse(world.far.get("/v1/feeds/warnings.atom").content)
    assert all(e.id != f"urn:uuid:{incident}" for e in far.entries)
