"""``GET /v1/stream`` through the real pipeline: reports produced to the broker, fused by a real
fusion worker (which writes the change log in its batch transaction), streamed by the API under
uvicorn to httpx clients of different reach.

Places are real San Francisco neighbourhoods (data/sf): a fire in the Mission, one by Lake
Merced (Lakeshore, > 2.7 km from every community but Sunset/Parkside), one in the Tenderloin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon

from hub.api.factory import create_app
from hub.settings import Settings
from hub.stack.broker import free_port
from hub.store.db import connect
from tests.auth_helpers import LOOPBACK_PEER, register, token_for
from tests.fusion_helpers import GENEROUS_LIMITS, own_stream
from tests.test_incidents import _polygons, report, run

POLYS = _polygons()
MISSION = "Mission"
LAKESHORE = "Lakeshore"
TENDERLOIN = "Tenderloin"
LAKE_MERCED = (-122.50634, 37.72437)


def _inside(name: str) -> tuple[float, float]:
    point = POLYS[name].representative_point()
    return point.x, point.y


@dataclass
class Live:
    settings: Settings
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def live(base_settings: Settings, sf_communities: list[str]) -> Iterator[Live]:
    port = free_port()
    settings = own_stream(base_settings, "stream", **GENEROUS_LIMITS).model_copy(
        update={"api_port": port, "stream_ping_s": 0.5, "stream_poll_s": 5.0}
    )
    app = create_app(settings)
    jurisdiction = POLYS[TENDERLOIN]
    if not isinstance(jurisdiction, MultiPolygon):
        jurisdiction = MultiPolygon([jurisdiction])
    specs: dict[str, dict[str, Any]] = {
        "admin": {"kind": "admin"},
        "analyst": {"kind": "analyst"},
        "mission": {"kind": "community", "community_id": MISSION},
        "department": {"kind": "department", "jurisdiction": jurisdiction},
        "risk only": {"kind": "community", "community_id": MISSION, "scope": "risk:read"},
    }
    tokens = {}
    with TestClient(app, client=LOOPBACK_PEER) as http:
        for name, spec in specs.items():
            scope = spec.pop("scope", None)
            registered, secret = register(settings, **spec)
            assert secret is not None
            tokens[name] = token_for(http, registered.client_id, secret, scope)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-stream", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Live(settings, f"http://127.0.0.1:{port}", tokens)
    server.should_exit = True
    thread.join(10)


def _last_seq(settings: Settings) -> int:
    with connect(settings) as conn:
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM picture_change").fetchone()
    return int(row[0]) if row else 0


@dataclass
class Event:
    name: str
    id: int
    data: dict[str, Any]


class Reader:
    """An SSE client on a thread: collects events until closed."""

    def __init__(self, live: Live, who: str, **params: Any) -> None:
        headers = {"Authorization": f"Bearer {live.tokens[who]}"}
        if "last_event_id" in params:
            headers["Last-Event-ID"] = str(params.pop("last_event_id"))
        self.events: list[Event] = []
        self.status: int | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._args = (f"{live.url}/v1/stream", headers, params)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no answer from /v1/stream"

    def _run(self) -> None:
        url, headers, params = self._args
        with (
            httpx.Client(timeout=httpx.Timeout(10.0)) as http,
            http.stream("GET", url, headers=headers, params=params) as response,
        ):
            self.status = response.status_code
            self._ready.set()
            if response.status_code != 200:
                return
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line == "":
                    if "data" in fields:
                        data = orjson.loads(fields["data"])
                        self.events.append(Event(fields["event"], int(fields["id"]), data))
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    fields[key] = value[1:] if value.startswith(" ") else value

    def until(self, done: Callable[[list[Event]], bool], timeout_s: float = 30) -> list[Event]:
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            assert time.monotonic() < deadline, f"stream: not there in time: {self.events}"
            time.sleep(0.05)
        return list(self.events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _ids(events: list[Event]) -> set[str]:
    return {e.data["id"] for e in events}


def test_reports_reach_each_caller_within_its_reach(live: Live) -> None:
    start = _last_seq(live.settings)
    readers = {
        who: Reader(live, who, after=start, types="incident,warning")
        for who in ("admin", "analyst", "mission", "department")
    }
    mission = report(_inside(MISSION), MISSION, minutes=600, reporter="r-mission")
    far = report(LAKE_MERCED, LAKESHORE, minutes=600, reporter="r-lake")
    tenderloin = report(_inside(TENDERLOIN), TENDERLOIN, minutes=600, reporter="r-tl")
    run(live.settings, [mission, far, tenderloin])
    with connect(live.settings) as conn:
        incident_of: dict[str, str] = dict(
            conn.execute(
                "SELECT event_id::text, incident_id::text FROM incident_report"
                " WHERE event_id = ANY(%s::uuid[])",
                ([d["event_id"] for d in (mission, far, tenderloin)],),
            ).fetchall()
        )
    m, f, t = (incident_of[d["event_id"]] for d in (mission, far, tenderloin))
    admin = readers["admin"].until(lambda es: {m, f, t} <= _ids(es))
    created = {e.data["id"]: e for e in admin}
    for incident in (m, f, t):
        event = created[incident]
        assert event.name == "incident" and event.data["type"] == "incident"
        assert event.data["change"] == "created" and event.id == event.data["seq"] > start
        assert set(event.data) == {"seq", "type", "change", "id", "at", "object"}
        assert event.data["object"]["id"] == incident
    analyst = readers["analyst"].until(lambda es: {m, f, t} <= _ids(es))
    # The object is the list endpoint's Feature for that caller, and never names a reporter.
    # (one by one: the session's database may hold more incidents than one list page)
    as_listed = {
        i: httpx.get(
            f"{live.url}/v1/incidents/{i}",
            headers={"Authorization": f"Bearer {live.tokens['analyst']}"},
        ).json()
        for i in {event.data["id"] for event in analyst}
    }
    for event in analyst:
        assert event.data["object"]["properties"] == as_listed[event.data["id"]]["properties"]
        assert b"reporter" not in orjson.dumps(event.data) and b"r-mission" not in orjson.dumps(
            event.data
        )
    mission_seen = readers["mission"].until(lambda es: m in _ids(es))
    department_seen = readers["department"].until(lambda es: t in _ids(es))
    time.sleep(1.0)  # whatever else would come has come: the far ones must not
    # Lakeshore is far from the Mission (the Tenderloin lies within its 2 km: seen, shareable).
    assert f not in _ids(readers["mission"].events), mission_seen
    assert _ids(readers["department"].events) & {m, f} == set(), department_seen
    for reader in readers.values():
        reader.close()


def test_resume_with_last_event_id_gives_every_change_once_in_order(live: Live) -> None:
    start = _last_seq(live.settings)
    first = Reader(live, "admin", after=start)
    a = report(_inside(MISSION), MISSION, minutes=900, reporter="a1")
    run(live.settings, [a])
    seen = first.until(lambda es: len(es) >= 1)
    first.close()
    cursor = seen[-1].id
    # While disconnected: a second source corroborates, and a new fire elsewhere.
    b = report(_inside(MISSION), MISSION, minutes=905, reporter="a2", system="other-app")
    c = report(_inside(TENDERLOIN), TENDERLOIN, minutes=905, reporter="c1")
    run(live.settings, [b, c])
    expected_after = _expected(live.settings, cursor)
    assert expected_after, "fusion recorded no change for the later reports"
    again = Reader(live, "admin", last_event_id=cursor, after=0)  # the header wins
    got = again.until(lambda es: len(es) >= len(expected_after))
    time.sleep(0.5)
    again.close()
    ids = [e.id for e in again.events]
    assert ids == expected_after  # each once, in order, none before the cursor
    assert {"updated", "created"} <= {e.data["change"] for e in got}


def _expected(settings: Settings, after: int) -> list[int]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT seq FROM picture_change WHERE seq > %s AND status = 'actual' ORDER BY seq",
            (after,),
        ).fetchall()
    return [seq for (seq,) in rows]


def test_scopes_and_bad_cursor(live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.tokens['risk only']}"}
    with httpx.Client(base_url=live.url, timeout=5) as http:
        bad = http.get("/v1/stream", headers={**headers, "Last-Event-ID": "soon"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert http.get("/v1/stream").status_code == 401
    # A risk-only caller streams, but is sent no incident change.
    start = _last_seq(live.settings)
    reader = Reader(live, "risk only", after=start)
    assert reader.status == 200
    run(live.settings, [report(_inside(MISSION), MISSION, minutes=1200, reporter="z")])
    time.sleep(1.5)
    reader.close()
    assert all(e.name == "risk" for e in reader.events)


def test_max_clients_answers_503_with_retry_after(live: Live) -> None:
    full = live.settings.model_copy(update={"stream_max_clients": 0})
    with TestClient(create_app(full), client=LOOPBACK_PEER) as http:
        answer = http.get("/v1/stream", headers={"Authorization": f"Bearer {live.tokens['admin']}"})
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["content-type"].startswith("application/problem+json")
