"""``GET /v1/incidents`` and ``GET /v1/incidents/{id}`` on incidents built by the real pipeline
(broker, fusion, PostGIS): filters against SQL and against shapely/pyproj over the same rows,
paging, problems, provenance, reporter projection, alias redirects, and a small access matrix.

Places are real SF neighbourhoods: a fire across the border of Western Addition (WEST) and
Tenderloin (EAST), incidents inside each, and one in Excelsior, far from both. The database is
shared by the session: my incidents live in their own time window (2033), and expectations
over whole collections are computed over the whole table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, box

from hub.api.factory import create_app
from hub.settings import Settings
from hub.store.db import connect
from tests.auth_helpers import parts, signed_in
from tests.fusion_helpers import GENEROUS_LIMITS, own_stream
from tests.test_incidents import (
    EAST,
    GEOD,
    WEST,
    _polygons,
    border,  # noqa: F401  (the fixture: two points 80 m apart across the WEST/EAST border)
    incidents_of,
    report,
    run,
)

FAR = "Excelsior"  # > 3 km from WEST and EAST
T = datetime.fromisoformat("2033-02-01T10:00:00+08:00")
SINCE = "2033-02-01T02:00:00Z"  # T in UTC: my incidents alone from here on
PROBLEM = "application/problem+json"
NEAR_M, FAR_M = 1500.0, 2500.0  # the community policy's edge is 2 km: stay clear both ways
UTM_10N = Transformer.from_crs(4326, 32610, always_xy=True)
POLYS = _polygons()


def metric(geom: Any) -> Any:
    return shapely.transform(geom, lambda x, y: UTM_10N.transform(x, y), interleaved=False)


def _at(doc: dict[str, Any], minutes: float, **fields: Any) -> dict[str, Any]:
    """``report()``'s event moved into my time window (and other fields set)."""
    return {**doc, "observed_at": (T + timedelta(minutes=minutes)).isoformat(), **fields}


def _fwd(p: tuple[float, float], azimuth: float, metres: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(p[0], p[1], azimuth, metres)
    return lon, lat


@dataclass(frozen=True)
class Incident:
    name: str
    id: str
    status: str
    category: str
    communities: list[str]
    geom: Any  # shapely, WGS84


@dataclass
class World:
    settings: Settings
    docs: dict[str, dict[str, Any]]
    incidents: dict[str, Incident]
    alias: str  # merge_b's incident id, merged away into "merged"
    members: dict[str, list[str]] = field(default_factory=dict)  # incident -> event names


@pytest.fixture(scope="module")
def world(base_settings: Settings, sf_communities: list[str], border: Any) -> World:  # noqa: F811
    settings = own_stream(base_settings, "incidents-api", **GENEROUS_LIMITS)
    west, east = border
    w0, t0, f0 = (POLYS[n].representative_point() for n in (WEST, EAST, FAR))
    w, t, f = (w0.x, w0.y), (t0.x, t0.y), (f0.x, f0.y)
    # the pair that a late report merges: 500 m apart, the report in the middle, observed
    # before both (so it seeds the incident both join; their ids stay as aliases)
    docs = {
        "cross_w": _at(report(west, WEST, reporter="alice"), 0),
        "cross_e": _at(report(east, EAST, reporter="bob"), 4),
        "tri_1": _at(report(w, WEST, reporter="carol", severity="Extreme"), 60),
        "tri_2": _at(report(_fwd(w, 90, 150), WEST, reporter="dan"), 61),
        "tri_3": _at(report(_fwd(w, 0, 150), WEST, reporter=None, system="alarm-net"), 62),
        "merge_a": _at(report(a := _fwd(w, 180, 400), WEST, reporter="erin"), 120),
        "merge_b": _at(report(_fwd(a, 90, 500), WEST, reporter="fay"), 121),
        "near": _at(report(t, EAST, reporter="gus", event_type="gas_leak"), 180),
        "drill": _at(report(t, EAST, reporter="hal", status="exercise"), 180),
        "far": _at(report(f, FAR, reporter="ida", event_type="flood"), 240),
        "closed": _at(report(_fwd(t, 0, 100), EAST, reporter="jo", event_type="medical"), 300),
    }
    docs["near"]["category"], docs["far"]["category"] = "Safety", "Met"
    docs["far"]["severity"], docs["closed"]["category"] = "Moderate", "Health"
    for name, doc in docs.items():
        point = Point(doc["geometry"]["coordinates"])
        assert POLYS[doc["community_id"]].contains(point), f"{name} lies in its community"
    run(settings, list(docs.values()))
    first = incidents_of(settings, [docs["merge_a"], docs["merge_b"]])
    alias = str(first[docs["merge_b"]["event_id"]]["id"])
    assert alias != str(first[docs["merge_a"]["event_id"]]["id"]), "two incidents before"
    docs["bridge"] = _at(report(_fwd(a, 90, 250), WEST, reporter="kim"), 119)
    docs["cancel"] = _at(
        report(_fwd(t, 0, 100), EAST, reporter="jo", kind="cancel"),
        310,
        refs=[docs["closed"]["event_id"]],
    )
    run(settings, [docs["bridge"], docs["cancel"]])
    reports = {k: v for k, v in docs.items() if k != "cancel"}
    found = incidents_of(settings, list(reports.values()))
    by_event = {name: str(found[doc["event_id"]]["id"]) for name, doc in reports.items()}
    names = {"cross_w": "cross", "tri_1": "tri", "merge_a": "merged", "near": "near"}
    names |= {"drill": "drill", "far": "far", "closed": "closed"}
    ids = {names[k]: v for k, v in by_event.items() if k in names}
    assert len(set(ids.values())) == len(ids) == 7
    members = {n: sorted(e for e, i in by_event.items() if i == ids[n]) for n in ids}
    assert members["cross"] == ["cross_e", "cross_w"]
    assert members["merged"] == ["bridge", "merge_a", "merge_b"]
    with connect(settings, autocommit=True) as conn:
        # A decision, as an operator's would be recorded (the write side is another issue).
        conn.execute(
            "UPDATE incident SET verification = 'refuted', decided_by = 'tester',"
            " decided_at = '2033-02-01T05:00:00+00', decision_reason = 'no gas' WHERE id = %s",
            (ids["near"],),
        )
        rows = conn.execute(
            "SELECT id::text, status, category, communities, ST_AsText(geom) FROM incident"
            " WHERE id = ANY(%s::uuid[])",
            (list(ids.values()),),
        ).fetchall()
    by_id = {r[0]: r for r in rows}
    incidents = {
        n: Incident(n, i, by_id[i][1], by_id[i][2], by_id[i][3], shapely.from_wkt(by_id[i][4]))
        for n, i in ids.items()
    }
    assert incidents["tri"].geom.geom_type == "Polygon"
    assert incidents["cross"].geom.geom_type == "LineString"
    assert incidents["far"].geom.geom_type == "Point"
    return World(settings, docs, incidents, alias, members)


# --- callers ----------------------------------------------------------------------------------


@dataclass
class Caller:
    name: str
    kind: str
    http: TestClient
    subject: str
    community: str | None = None
    area: Any = None  # a department's jurisdiction
    categories: list[str] | None = None

    def sees(self, status: str, category: str, communities: list[str], geom: Any) -> bool:
        """The rule, computed here with shapely in metres, independently of the hub's SQL."""
        if self.kind in ("admin", "analyst"):
            return True
        if self.kind == "department":
            return bool(self.area.intersects(geom)) and (
                self.categories is None or category in self.categories
            )
        assert self.community is not None
        if self.community in communities:
            return True
        return status == "actual" and _near(self.community, geom)

    def sees_event(self, doc: dict[str, Any]) -> bool:
        point = Point(doc["geometry"]["coordinates"])
        if self.kind == "community":
            return doc["community_id"] == self.community or _near(str(self.community), point)
        return self.sees("actual", doc["category"], [doc["community_id"]], point)

    def knows_reporter(self, doc: dict[str, Any]) -> bool:
        if self.kind == "community":
            return doc["community_id"] == self.community
        return self.kind != "analyst"


def _near(community: str, geom: Any) -> bool:
    to = metric(POLYS[community]).distance(metric(geom))
    assert to < NEAR_M or to > FAR_M, f"{geom} is {to:.0f} m from {community}: too near the edge"
    return bool(to < NEAR_M)


def _area(name: str) -> MultiPolygon:
    polygon = POLYS[name]
    return polygon if isinstance(polygon, MultiPolygon) else MultiPolygon([polygon])


@pytest.fixture(scope="module")
def callers(world: World) -> Iterator[dict[str, Caller]]:
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("admin", "admin", {}),
        ("analyst", "analyst", {}),
        ("department east", "department", {"jurisdiction": _area(EAST)}),
        (
            "department east, Fire",
            "department",
            {"jurisdiction": _area(EAST), "categories": ["Fire"]},
        ),
        ("department far", "department", {"jurisdiction": _area(FAR)}),
        ("community west", "community", {"community_id": WEST}),
        ("community east", "community", {"community_id": EAST}),
        ("community far", "community", {"community_id": FAR}),
    ]
    app = create_app(world.settings)
    with ExitStack() as stack:
        out = {}
        for name, kind, kwargs in specs:
            http = stack.enter_context(signed_in(app, world.settings, kind, **kwargs))
            subject = parts(http.headers["Authorization"].split()[1])[1]["sub"]
            out[name] = Caller(
                name,
                kind,
                http,
                subject,
                kwargs.get("community_id"),
                kwargs.get("jurisdiction"),
                kwargs.get("categories"),
            )
        yield out


def _walk(http: TestClient, params: dict[str, str]) -> tuple[list[str], int]:
    """Every id of the collection, following next links; and how many pages."""
    ids: list[str] = []
    r = http.get("/v1/incidents", params=params)
    pages = 1
    while True:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/geo+json"
        body = r.json()
        assert body["numberReturned"] == len(body["features"])
        ids += [f["id"] for f in body["features"]]
        nxt = [x["href"] for x in body["links"] if x["rel"] == "next"]
        if not nxt:
            return ids, pages
        query = parse_qs(urlsplit(nxt[0]).query)
        kept = {k: v[0] for k, v in query.items() if k != "cursor"}
        assert kept == {k: v for k, v in params.items() if k != "cursor"}, "filters kept"
        r = http.get(nxt[0])
        pages += 1


def _sql_ids(world: World, where: str, args: tuple[Any, ...] = ()) -> set[str]:
    with connect(world.settings) as conn:
        rows = conn.execute(f"SELECT id::text FROM incident WHERE {where}", args).fetchall()
    return {r[0] for r in rows}


def _all_geometries(world: World, status: str = "actual") -> dict[str, Any]:
    with connect(world.settings) as conn:
        rows = conn.execute(
            "SELECT id::text, ST_AsText(geom) FROM incident WHERE status = %s", (status,)
        ).fetchall()
    return {i: shapely.from_wkt(wkt) for i, wkt in rows}


# --- the collection ---------------------------------------------------------------------------


def test_filters_narrow_as_sql_does(world: World, callers: dict[str, Caller]) -> None:
    http = callers["admin"].http
    mine = {i.id for i in world.incidents.values()}
    cases: list[tuple[dict[str, str], str, tuple[Any, ...]]] = [
        ({}, "status = 'actual'", ()),
        ({"status": "exercise"}, "status = 'exercise'", ()),
        ({"category": "Met"}, "status = 'actual' AND category = 'Met'", ()),
        ({"event_type": "gas_leak"}, "status = 'actual' AND event_type = 'gas_leak'", ()),
        ({"severity": "Extreme"}, "status = 'actual' AND severity = 'Extreme'", ()),
        ({"verification": "refuted"}, "status = 'actual' AND verification = 'refuted'", ()),
        ({"verification": "corroborated", "since": SINCE}, "", ()),
        ({"state": "closed"}, "status = 'actual' AND state = 'closed'", ()),
        ({"since": "2033-02-01T13:00:00+08:00"}, "status = 'actual'", ()),
        ({"category": "Fire", "state": "open", "since": SINCE}, "", ()),
    ]
    for params, where, args in cases:
        if not where:  # combined: every condition, over my window
            where = "status = 'actual' AND last_observed_at >= '2033-02-01T02:00:00Z'"
            where += "".join(f" AND {k} = %s" for k in params if k != "since")
            args = tuple(v for k, v in params.items() if k != "since")
        elif "since" in params:
            where += " AND last_observed_at >= %s"
            args = (datetime.fromisoformat(params["since"]),)
        got, _ = _walk(http, {**params, "limit": "1000"})
        expected = _sql_ids(world, where, args)
        assert len(got) == len(set(got)) and set(got) == expected, params
        # each case keeps some of my incidents and drops others: the filter did narrow
        assert expected & mine and (mine - expected), params
    assert world.incidents["drill"].id not in _walk(http, {"since": SINCE})[0]


def test_spatial_filters_match_shapely_and_pyproj(world: World, callers: dict[str, Caller]) -> None:
    http = callers["admin"].http
    geoms = _all_geometries(world)
    t0 = POLYS[EAST].representative_point()
    bbox = (t0.x - 0.004, t0.y - 0.003, t0.x + 0.004, t0.y + 0.003)
    got, _ = _walk(http, {"bbox": ",".join(map(str, bbox)), "limit": "1000"})
    assert set(got) == {i for i, g in geoms.items() if g.intersects(box(*bbox))}
    assert world.incidents["near"].id in got and world.incidents["far"].id not in got

    # within: the Tenderloin (multi)polygon as WKT, and a GeoJSON polygon
    area = POLYS[EAST]
    assert len(area.wkt) < 8000
    wkt, _ = _walk(http, {"within": area.wkt, "limit": "1000"})
    assert set(wkt) == {i for i, g in geoms.items() if g.intersects(area)}
    assert {n for n, i in world.incidents.items() if i.id in wkt} == {"cross", "near", "closed"}
    hull = shapely.MultiPoint([(-122.44, 37.77), (-122.42, 37.77), (-122.43, 37.79)]).convex_hull
    doc = shapely.to_geojson(shapely.MultiPolygon([hull]))
    gj, _ = _walk(http, {"within": doc, "limit": "1000"})
    assert set(gj) == {i for i, g in geoms.items() if g.intersects(hull)}

    # near: geodesic distance on the WGS84 spheroid, against pyproj
    w0 = POLYS[WEST].representative_point()
    for radius in (200.0, 1000.0):
        got, _ = _walk(http, {"near": f"{w0.x},{w0.y},{radius}", "limit": "1000"})
        distance = {i: _geodesic_distance(w0.x, w0.y, g) for i, g in geoms.items()}
        clear = {i for i, d in distance.items() if abs(d - radius) > 2}  # not on the edge
        assert set(got) & clear == {i for i in clear if distance[i] <= radius}
    assert world.incidents["tri"].id in got and world.incidents["merged"].id in got
    assert world.incidents["near"].id not in got


def _geodesic_distance(lon: float, lat: float, geom: Any) -> float:
    """Metres from the point to the geometry (0 inside), from its boundary densified to ~1 m."""
    if geom.intersects(Point(lon, lat)):
        return 0.0
    target = geom.boundary if geom.geom_type in ("Polygon", "MultiPolygon") else geom
    coords = shapely.get_coordinates(shapely.segmentize(target, 1e-5))
    n = len(coords)
    _, _, d = GEOD.inv(np.full(n, lon), np.full(n, lat), coords[:, 0], coords[:, 1])
    return float(np.min(d))


def test_features_carry_the_incident(world: World, callers: dict[str, Caller]) -> None:
    r = callers["admin"].http.get(
        "/v1/incidents", params={"since": SINCE, "event_type": "gas_leak"}
    )
    (feature,) = [f for f in r.json()["features"] if f["id"] == world.incidents["near"].id]
    assert feature["geometry"]["type"] == "Point"
    assert Point(feature["geometry"]["coordinates"]).distance(world.incidents["near"].geom) < 1e-8
    p = feature["properties"]
    assert p["verification"] == "refuted" and p["decided_by"] == "tester"
    assert p["decided_at"] == "2033-02-01T05:00:00Z" and p["decision_reason"] == "no gas"
    assert p["first_observed_at"] == p["last_observed_at"] == "2033-02-01T05:00:00Z"
    assert (p["status"], p["state"], p["category"], p["communities"]) == (
        "actual",
        "open",
        "Safety",
        [EAST],
    )
    assert p["reports"] == p["sources"] == 1 and isinstance(p["updated_seq"], int)


def test_paging_sees_every_incident_once_and_a_changed_one_again(
    world: World, callers: dict[str, Caller]
) -> None:
    http = callers["admin"].http
    expected = _sql_ids(world, "status = 'actual' AND last_observed_at >= %s", (T,))
    ids, pages = _walk(http, {"since": SINCE, "limit": "2"})
    assert sorted(ids) == sorted(expected) and pages == -(-len(expected) // 2) >= 3
    seqs = [f["properties"]["updated_seq"] for f in _page(http, {"since": SINCE})["features"]]
    assert seqs == sorted(seqs)

    first = _page(http, {"since": SINCE, "limit": "2"})
    changed = first["features"][0]["id"]
    with connect(world.settings, autocommit=True) as conn:  # as fusion does on every change
        conn.execute(
            "UPDATE incident SET updated_seq = nextval('incident_update_seq') WHERE id = %s",
            (changed,),
        )
    rest, _ = _walk(http, _next_params(first))
    seen = [f["id"] for f in first["features"]] + rest
    assert sorted(set(seen)) == sorted(expected), "none skipped"
    assert seen.count(changed) == 2 and seen[-1] == changed, "the changed one again, at the end"


def _page(http: TestClient, params: dict[str, str]) -> dict[str, Any]:
    r = http.get("/v1/incidents", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _next_params(body: dict[str, Any]) -> dict[str, str]:
    href = next(x["href"] for x in body["links"] if x["rel"] == "next")
    return {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "1,2,3"},
        {"bbox": "-122.4,37.8,-122.5,37.7"},
        {"within": "POLYGON((0 0, 1 0, 1 1))"},  # not closed
        {"within": "POINT(-122.4 37.8)"},
        {"within": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"},  # self-intersecting
        {"within": "POLYGON((0 0, 200 0, 200 1, 0 0))"},  # not WGS84
        {"within": "POLYGON EMPTY"},
        {"within": "not wkt"},
        {"within": '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}'},
        {"within": '{"type": "Point", "coordinates": [0, 0]}'},
        {"within": '{"type": "Polygon"'},
        {"within": "POLYGON((" + ", ".join(["0 0"] * 2000) + "))"},  # too long
        {"near": "-122.4,37.8"},
        {"near": "-122.4,37.8,50001"},
        {"near": "-122.4,37.8,-1"},
        {"near": "-122.4,nan,10"},
        {"near": "-122.4,97.8,10"},
        {"severity": "severe"},
        {"verification": "maybe"},
        {"state": "burning"},
        {"status": "Actual"},
        {"since": "2033-02-01T10:00:00"},
        {"since": "2033-13-01T10:00:00Z"},
        {"limit": "0"},
        {"limit": "1001"},
        {"cursor": "!!"},
        {"category": "Fi\x00re"},
        {"event_type": ""},
        {"report": ""},
        {"report": "not-a-uuid"},
        {"report": f"{uuid.UUID(int=1)},"},  # an empty id after the comma
        {"report": ",".join(str(uuid.UUID(int=i)) for i in range(101))},  # over 100
        {"report": "x" * 5000},
    ],
)
def test_bad_parameters_are_400_problems(
    callers: dict[str, Caller], params: dict[str, str]
) -> None:
    r = callers["admin"].http.get("/v1/incidents", params=params)
    assert r.status_code == 400, (params, r.text)
    assert r.headers["content-type"] == PROBLEM and r.json()["status"] == 400


# --- which incident holds a report (report=) -------------------------------------------------


def _holders(http: TestClient, ids: list[str], **params: str) -> dict[str, list[str]]:
    """incident id -> its matched_reports, over every page of ``report=ids``."""
    found: dict[str, list[str]] = {}
    r = http.get("/v1/incidents", params={"report": ",".join(ids), **params})
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        for f in body["features"]:
            assert f["id"] not in found, "each incident once"
            found[f["id"]] = f["matched_reports"]
        nxt = [x["href"] for x in body["links"] if x["rel"] == "next"]
        if not nxt:
            return found
        r = http.get(nxt[0])


def _membership(world: World) -> dict[str, str]:
    """event id -> incident id, from the store (cancelled members included)."""
    ids = [d["event_id"] for d in world.docs.values()]
    with connect(world.settings) as conn:
        rows = conn.execute(
            "SELECT event_id::text, incident_id::text FROM incident_report"
            " WHERE event_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return dict(rows)


def test_report_finds_the_incidents_holding_it(world: World, callers: dict[str, Caller]) -> None:
    http, docs, inc = callers["admin"].http, world.docs, world.incidents
    ev = {name: doc["event_id"] for name, doc in docs.items()}
    unknown = str(uuid.uuid4())
    asked = [ev["cross_w"], ev["tri_2"], ev["tri_3"], ev["merge_b"], ev["closed"], unknown]
    expected = {
        inc["cross"].id: [ev["cross_w"]],
        inc["tri"].id: sorted([ev["tri_2"], ev["tri_3"]]),
        inc["merged"].id: [ev["merge_b"]],  # a report of a merged-away incident: where it is now
        inc["closed"].id: [ev["closed"]],  # a cancelled report stays a member
    }
    assert _holders(http, asked) == expected
    # paged one incident at a time, the next links keep report=
    ids, pages = _walk(http, {"report": ",".join(asked), "limit": "1"})
    assert sorted(ids) == sorted(expected) and pages == 4
    # the other filters still apply: a drill's report is found in the drill picture only
    assert _holders(http, [ev["drill"]]) == {}
    assert _holders(http, [ev["drill"]], status="exercise") == {inc["drill"].id: [ev["drill"]]}
    assert _holders(http, [ev["cross_w"]], event_type="flood") == {}
    # the same id twice, other spellings of a UUID: counted once
    braced = "{" + ev["far"].upper() + "}"
    assert _holders(http, [ev["far"], braced]) == {inc["far"].id: [ev["far"]]}
    assert _holders(http, [unknown]) == {}


def test_report_answers_within_the_callers_reach(world: World, callers: dict[str, Caller]) -> None:
    """Every caller asks for every report at once (both pictures): it finds a report's incident
    exactly when it may see the incident AND the report; out of reach it is simply absent."""
    membership = _membership(world)
    by_id = {i.id: i for i in world.incidents.values()}
    docs = {d["event_id"]: d for d in world.docs.values()}
    assert set(membership.values()) == set(by_id), "every incident holds one of my reports"
    unauthorised, failures = 0, []
    for c in callers.values():
        expected: dict[str, list[str]] = {}
        for event_id, incident_id in membership.items():
            i = by_id[incident_id]
            if c.sees(i.status, i.category, i.communities, i.geom) and c.sees_event(docs[event_id]):
                expected.setdefault(incident_id, []).append(event_id)
        got: dict[str, list[str]] = {}
        for status in ("actual", "exercise"):
            got |= _holders(c.http, list(membership), status=status)
        found = {(i, e) for i, events in got.items() for e in events}
        allowed = {(i, e) for i, events in expected.items() for e in events}
        unauthorised += len(found - allowed)
        if found != allowed:
            failures.append(f"{c.name}: found {sorted(found)}, expected {sorted(allowed)}")
    assert unauthorised == 0 and failures == [], failures
    # the cases that make the rule: out of reach altogether, and an incident in reach whose
    # report is not (West's report of the fire across the border, for the East department)
    far, east = callers["community far"].http, callers["department east"].http
    cross_w, cross_e = world.docs["cross_w"]["event_id"], world.docs["cross_e"]["event_id"]
    assert _holders(far, [cross_w, cross_e]) == {}
    assert _holders(east, [cross_w]) == {}
    assert _holders(east, [cross_w, cross_e]) == {world.incidents["cross"].id: [cross_e]}


# --- one incident -----------------------------------------------------------------------------


def _utc(doc: dict[str, Any]) -> str:
    return datetime.fromisoformat(doc["observed_at"]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_detail_has_provenance_and_timeline(world: World, callers: dict[str, Caller]) -> None:
    http = callers["admin"].http
    cross = world.incidents["cross"]
    r = http.get(f"/v1/incidents/{cross.id}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    feature = r.json()
    assert feature["id"] == cross.id and feature["geometry"]["type"] == "LineString"
    assert feature["properties"]["verification"] == "corroborated"
    assert sorted(feature["properties"]["communities"]) == sorted([WEST, EAST])
    w, e = world.docs["cross_w"], world.docs["cross_e"]
    assert feature["reports"] == [
        {
            "event_id": d["event_id"],
            "community_id": d["community_id"],
            "source": {"system": "community-app", "connector": "test", "reporter": who},
            "observed_at": _utc(d),
            "kind": "incident",
            "event_type": "fire",
            "cancelled": False,
            "pinned": False,
        }
        for d, who in ((w, "alice"), (e, "bob"))
    ]
    assert [(t["what"], t["event_id"], t["at"]) for t in feature["timeline"]] == [
        ("report_joined", w["event_id"], _utc(w)),
        ("report_joined", e["event_id"], _utc(e)),
    ]
    rels = {x["rel"]: x["href"] for x in feature["links"]}
    assert rels["self"].endswith(f"/v1/incidents/{cross.id}")
    assert rels["collection"].endswith("/v1/incidents")

    closed = http.get(f"/v1/incidents/{world.incidents['closed'].id}").json()
    assert closed["properties"]["state"] == "closed"
    assert [x["cancelled"] for x in closed["reports"]] == [True]
    assert [t["what"] for t in closed["timeline"]] == ["report_joined", "report_cancelled"]


def test_reporters_are_projected_per_caller(world: World, callers: dict[str, Caller]) -> None:
    cross = world.incidents["cross"].id
    w, e = world.docs["cross_w"]["event_id"], world.docs["cross_e"]["event_id"]
    expected = {
        "admin": {w: "alice", e: "bob"},
        "analyst": {w: None, e: None},
        "community west": {w: "alice", e: None},
        "community east": {w: None, e: "bob"},
        "department east": {e: "bob"},  # West's report lies outside its jurisdiction
    }
    for name, reporters in expected.items():
        r = callers[name].http.get(f"/v1/incidents/{cross}")
        assert r.status_code == 200, (name, r.text)
        got = {x["event_id"]: x["source"]["reporter"] for x in r.json()["reports"]}
        assert got == reporters, name


def test_a_merged_away_id_redirects(world: World, callers: dict[str, Caller]) -> None:
    merged = world.incidents["merged"].id
    http = callers["admin"].http
    r = http.get(f"/v1/incidents/{world.alias}", follow_redirects=False)
    assert r.status_code == 308
    assert r.headers["location"] == f"http://testserver/v1/incidents/{merged}"
    followed = http.get(f"/v1/incidents/{world.alias}")
    assert followed.status_code == 200 and followed.json()["id"] == merged
    body = followed.json()
    assert [x["event_id"] for x in body["reports"]] == [
        world.docs[n]["event_id"] for n in ("bridge", "merge_a", "merge_b")
    ]
    # The late report seeded the incident both joined: both former ids merged into it.
    merges = [t for t in body["timeline"] if t["what"] == "merged"]
    assert len(merges) == 2 and all(t["event_id"] is None for t in merges)
    assert world.alias in {t["detail"]["from"] for t in merges}
    assert body["properties"]["reports"] == 3
    far = callers["community far"].http.get(f"/v1/incidents/{world.alias}", follow_redirects=False)
    assert far.status_code == 404 and far.headers["content-type"] == PROBLEM


def test_unknown_out_of_reach_and_malformed_ids(world: World, callers: dict[str, Caller]) -> None:
    admin, far = callers["admin"].http, callers["community far"].http
    unknown = admin.get(f"/v1/incidents/{uuid.uuid4()}")
    hidden = far.get(f"/v1/incidents/{world.incidents['cross'].id}")
    for r in (unknown, hidden):
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert hidden.json()["detail"] == f"no incident {world.incidents['cross'].id}"
    bad = admin.get("/v1/incidents/not-a-uuid")
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM


# --- who sees what ----------------------------------------------------------------------------


def test_incident_access_matrix(world: World, callers: dict[str, Caller]) -> None:
    """Callers x my incidents (list and detail, both pictures): expected status and rows; the
    figure is the count of answers that gave a caller something beyond its reach."""
    cells, unauthorised, failures = 0, 0, []
    by_id = {i.id: i for i in world.incidents.values()}
    docs_by_event = {d["event_id"]: d for d in world.docs.values()}
    for c in callers.values():
        expected = {
            i.name
            for i in world.incidents.values()
            if c.sees(i.status, i.category, i.communities, i.geom)
        }
        listed = set()
        for status in ("actual", "exercise"):
            ids, _ = _walk(c.http, {"since": SINCE, "status": status, "limit": "1000"})
            listed |= {by_id[i].name for i in ids if i in by_id}
        cells += 1
        unauthorised += len(listed - expected)
        if listed != expected:
            failures.append(f"{c.name}: listed {sorted(listed)}, expected {sorted(expected)}")
        for inc in [*world.incidents.values(), None]:
            path = f"/v1/incidents/{inc.id if inc else world.alias}"
            allowed = (inc.name if inc else "merged") in expected
            r = c.http.get(path, follow_redirects=False)
            want = (200 if inc else 308) if allowed else 404
            cells += 1
            unauthorised += int(not allowed and r.status_code < 400)
            if r.status_code != want:
                failures.append(f"{c.name}: GET {path}: {r.status_code}, expected {want}")
            if r.status_code != 200 or inc is None:
                continue
            reports = r.json()["reports"]
            got = {x["event_id"] for x in reports}
            members = {world.docs[n]["event_id"] for n in world.members[inc.name]}
            if got != {m for m in members if c.sees_event(docs_by_event[m])}:
                failures.append(f"{c.name}: members of {path}: {got}")
            for x in reports:
                leak = x["source"]["reporter"] is not None
                if leak and not c.knows_reporter(docs_by_event[x["event_id"]]):
                    unauthorised += 1
                    failures.append(f"{c.name}: reporter of {x['event_id']} in {path}")
    print(f"incident access matrix: {cells} cells, unauthorised 2xx = {unauthorised}")
    assert unauthorised == 0 and failures == [], failures
    assert cells == len(callers) * 9


def test_reads_are_audited_with_their_rows(world: World, callers: dict[str, Caller]) -> None:
    far = callers["community far"]
    listed = far.http.get("/v1/incidents", params={"since": SINCE}).json()["numberReturned"]
    far.http.get(f"/v1/incidents/{world.incidents['far'].id}")
    far.http.get(f"/v1/incidents/{world.alias}")
    with connect(world.settings) as conn:
        rows = conn.execute(
            "SELECT endpoint, status, rows FROM audit_log WHERE subject = %s"
            " ORDER BY id DESC LIMIT 3",
            (far.subject,),
        ).fetchall()
    assert rows[::-1] == [
        ("/v1/incidents", 200, listed),
        ("/v1/incidents/{incident_id}", 200, 1),
        ("/v1/incidents/{incident_id}", 404, None),
    ]
