"""``POST /v1/incidents/{id}/verification`` and ``/split`` against the real pipeline: the API
writes a verification event to the broker, a running fusion worker applies it, the answer says
so (200), or that it is in the log (202) when fusion is not running.

Places are real: the border of Western Addition (WEST) and Tenderloin (EAST), and Excelsior
(FAR), more than 3 km from both; a neighbour within 2 km sees an incident but may not rule on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon

from hub.api.factory import create_app
from hub.settings import Settings
from tests.auth_helpers import parts, signed_in
from tests.fusion_helpers import (
    GENEROUS_LIMITS,
    fusion_stats,
    own_stream,
    produce,
    running_worker,
    wait_until,
)
from tests.test_incidents import (
    EAST,
    WEST,
    _polygons,
    border,  # noqa: F401  (the fixture: two points 80 m apart across the WEST/EAST border)
    incidents_of,
    report,
)

FAR = "Excelsior"
NEIGHBOUR = "Hayes Valley"  # borders Western Addition: sees the border fire, did not report it
T = datetime.fromisoformat("2034-03-01T09:00:00+08:00")
PROBLEM = "application/problem+json"


def _at(doc: dict[str, Any], minutes: float) -> dict[str, Any]:
    return {**doc, "observed_at": (T + timedelta(minutes=minutes)).isoformat()}


@dataclass
class Pipeline:
    settings: Settings
    app: Any

    def send(self, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Produce the reports; return their incidents once fusion stored them all."""
        before = fusion_stats(self.settings)["consumed"]
        produce(self.settings, [(b"k", orjson.dumps(d)) for d in docs])
        wait_until(
            lambda: fusion_stats(self.settings)["consumed"] >= before + len(docs), 60, "consumed"
        )
        return incidents_of(self.settings, docs)


@pytest.fixture(scope="module")
def pipeline(base_settings: Settings, sf_communities: list[str]) -> Iterator[Pipeline]:
    settings = own_stream(
        base_settings,
        "decisions",
        fusion_incidents=True,
        api_decision_wait_s=20.0,
        **GENEROUS_LIMITS,
    )
    with running_worker(settings):
        yield Pipeline(settings, create_app(settings))


@pytest.fixture(scope="module")
def clients(pipeline: Pipeline) -> Iterator[dict[str, TestClient]]:
    polys = _polygons()
    east = polys[EAST]
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("west", "community", {"community_id": WEST}),
        ("neighbour", "community", {"community_id": NEIGHBOUR}),
        ("far", "community", {"community_id": FAR}),
        ("department east", "department", {"jurisdiction": _multi(east)}),
        ("analyst", "analyst", {}),
        ("admin", "admin", {}),
    ]
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(signed_in(pipeline.app, pipeline.settings, kind, **kw))
            for name, kind, kw in specs
        }


def _multi(polygon: Any) -> MultiPolygon:
    return polygon if isinstance(polygon, MultiPolygon) else MultiPolygon([polygon])


@pytest.fixture
def fire(pipeline: Pipeline, border: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:  # noqa: F811
    """A fresh fire reported across the border by two residents: one corroborated incident."""
    west, east = border
    minutes = 180 * next(_SLOTS)  # apart beyond any window: never the same incident
    a = _at(report(west, WEST, reporter=f"w{minutes}"), minutes)
    b = _at(report(east, EAST, reporter=f"e{minutes}"), minutes + 2)
    found = pipeline.send([a, b])
    assert found[a["event_id"]]["id"] == found[b["event_id"]]["id"]
    return str(found[a["event_id"]]["id"]), a, b


_SLOTS = iter(range(1000))


def _subject(http: TestClient) -> str:
    subject: str = parts(http.headers["Authorization"].split()[1])[1]["sub"]
    return subject


def test_a_community_that_reported_it_verifies_and_fusion_records_who_and_why(
    clients: dict[str, TestClient], fire: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    incident, _, _ = fire
    west = clients["west"]
    r = west.post(
        f"/v1/incidents/{incident}/verification",
        json={"decision": "verified", "reason": "crew on site confirms"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"] is True and body["decision"] == "verified"
    assert body["incident_id"] == incident and r.headers["location"].endswith(incident)
    detail = west.get(f"/v1/incidents/{incident}").json()
    props = detail["properties"]
    assert props["verification"] == "verified"
    assert props["decided_by"] == _subject(west)
    assert props["decision_reason"] == "crew on site confirms"
    entry = [t for t in detail["timeline"] if t["what"] == "verified"]
    assert [t["event_id"] for t in entry] == [body["event_id"]]


def test_a_refuted_rumour_stays_visible_as_refuted(
    clients: dict[str, TestClient], fire: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    incident, _, _ = fire
    department = clients["department east"]
    r = department.post(
        f"/v1/incidents/{incident}/verification",
        json={"decision": "refuted", "reason": "no fire: a barbecue"},
    )
    assert r.status_code == 200, r.text
    listed = clients["west"].get("/v1/incidents", params={"verification": "refuted"}).json()
    assert incident in [f["id"] for f in listed["features"]]
    props = clients["analyst"].get(f"/v1/incidents/{incident}").json()["properties"]
    assert (props["verification"], props["decided_by"]) == ("refuted", _subject(department))


def test_who_may_not_rule(
    clients: dict[str, TestClient], fire: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    incident, _, _ = fire
    body = {"decision": "verified", "reason": "x"}
    # a neighbour within 2 km sees the incident, but did not report it
    assert clients["neighbour"].get(f"/v1/incidents/{incident}").status_code == 200
    r = clients["neighbour"].post(f"/v1/incidents/{incident}/verification", json=body)
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    # a community far away does not even see it
    r = clients["far"].post(f"/v1/incidents/{incident}/verification", json=body)
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    # an analyst reads, but holds no incidents:verify
    r = clients["analyst"].post(f"/v1/incidents/{incident}/verification", json=body)
    assert r.status_code == 403
    assert "incidents:verify" in r.headers["www-authenticate"]
    r = clients["admin"].post(f"/v1/incidents/{uuid.uuid4()}/verification", json=body)
    assert r.status_code == 404
    props = clients["admin"].get(f"/v1/incidents/{incident}").json()["properties"]
    assert props["verification"] == "corroborated"  # none of them changed anything


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "verified"},
        {"decision": "maybe", "reason": "x"},
        {"decision": "verified", "reason": ""},
        {"decision": "verified", "reason": "a\u0000b"},
        {"decision": "verified", "reason": "x" * 1001},
    ],
)
def test_bad_decisions_are_400_problems(
    clients: dict[str, TestClient], body: dict[str, Any]
) -> None:
    r = clients["admin"].post(f"/v1/incidents/{uuid.uuid4()}/verification", json=body)
    assert (r.status_code, r.headers["content-type"]) == (400, PROBLEM)


def test_split_takes_a_report_out_for_good(
    pipeline: Pipeline,
    clients: dict[str, TestClient],
    fire: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    incident, a, b = fire
    west = clients["west"]
    r = west.post(
        f"/v1/incidents/{incident}/split",
        json={"event_id": b["event_id"], "reason": "a second fire, not this one"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"] is True and body["split_incident_id"] not in (None, incident)
    found = incidents_of(pipeline.settings, [a, b])
    assert str(found[a["event_id"]]["id"]) == incident
    assert str(found[b["event_id"]]["id"]) == body["split_incident_id"]
    assert found[a["event_id"]]["verification"] == "reported"  # one source left
    left = west.get(f"/v1/incidents/{incident}").json()
    assert [t["what"] for t in left["timeline"]][-1] == "report_split"
    # the split-out incident is EAST's alone now: WEST may not rule on it any more
    again = {"event_id": b["event_id"], "reason": "again"}
    r = west.post(f"/v1/incidents/{body['split_incident_id']}/split", json=again)
    assert r.status_code == 403
    # the split-out report is alone: splitting it again is a conflict, as is a stranger
    r = clients["admin"].post(
        f"/v1/incidents/{body['split_incident_id']}/split",
        json={"event_id": b["event_id"], "reason": "again"},
    )
    assert (r.status_code, r.headers["content-type"]) == (409, PROBLEM)
    r = west.post(
        f"/v1/incidents/{incident}/split",
        json={"event_id": str(uuid.uuid4()), "reason": "not a member"},
    )
    assert r.status_code == 409


def test_without_fusion_running_the_decision_is_accepted_and_applied_later(
    pipeline: Pipeline,
    border: Any,  # noqa: F811
) -> None:
    # A pipeline of its own, whose worker is stopped while the API answers.
    settings = own_stream(pipeline.settings, "decisions-late", api_decision_wait_s=0.3)
    west, east = border
    a = _at(report(west, WEST, reporter="x1"), -600)
    b = _at(report(east, EAST, reporter="x2"), -599)
    late = Pipeline(settings, create_app(settings))
    with running_worker(settings):
        found = late.send([a, b])
    incident = str(found[a["event_id"]]["id"])
    with signed_in(late.app, settings, "admin") as admin:
        r = admin.post(
            f"/v1/incidents/{incident}/verification",
            json={"decision": "verified", "reason": "seen on camera"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["applied"] is False and r.headers["location"].endswith(incident)
        assert admin.get(f"/v1/incidents/{incident}").json()["properties"]["verification"] == (
            "corroborated"
        )
        with running_worker(settings):
            wait_until(
                lambda: (
                    admin.get(f"/v1/incidents/{incident}").json()["properties"]["verification"]
                    == "verified"
                ),
                60,
                "the decision applied",
            )
