"""Resources: the contract of a resource event's properties, the balances fusion keeps (real
broker, fusion worker, PostGIS), and ``GET /v1/resources`` and ``/v1/resources/matches``.

Places are real: every statement sits at a point inside the real polygon of its SF
neighbourhood (``representative_point``); the amounts of water are synthetic (no public data
of community stock exists). The database is shared by the session: my statements use a resource
type of their own (``WATER``), so every expectation is about my rows alone.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pyproj import Geod
from shapely.geometry import MultiPolygon, shape

from hub.api.factory import create_app
from hub.fusion.decode import SCHEMA, decode
from hub.fusion.dlq import DETAIL, REASON
from hub.fusion.resources import ResourceStage
from hub.settings import Settings
from hub.store.db import connect
from hub.store.resource_queries import greedy_cover
from schemas.resource import parse_resource
from tests.auth_helpers import LOOPBACK_PEER, bearer, register, signed_in, token_for
from tests.conftest import DATA
from tests.fusion_helpers import (
    GENEROUS_LIMITS,
    consume_all,
    fusion_stats,
    own_stream,
    produce,
    running_worker,
    wait_until,
)

GEOD = Geod(ellps="WGS84")
TAG = uuid.uuid4().hex[:8]
WATER = f"drinking_water_{TAG}"  # my rows alone
LITRE = "litre"
T = datetime.fromisoformat("2034-03-01T09:00:00+08:00")
NEEDY, OTHER_NEEDY = "Mission", "Tenderloin"
FAR = "Sunset/Parkside"
PROBLEM = "application/problem+json"


def _polygons() -> dict[str, Any]:
    doc = json.loads((DATA / "sf_analysis_neighborhoods.geojson").read_text())
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


POLYS = _polygons()


def _point(community: str) -> tuple[float, float]:
    p = POLYS[community].representative_point()
    return p.x, p.y


def statement(
    community: str,
    quantity: Any,
    direction: str = "available",
    *,
    minutes: float = 0,
    unit: str = LITRE,
    status: str = "actual",
    resource_type: str = WATER,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "community_id": community,
        "source": {"system": "aid-desk", "connector": "test"},
        "kind": "resource",
        "category": "Other",
        "status": status,
        "event_type": "resource_statement",
        "observed_at": (T + timedelta(minutes=minutes)).isoformat(),
        "geometry": {"type": "Point", "coordinates": list(_point(community))},
        "properties": {
            "resource_type": resource_type,
            "quantity": quantity,
            "unit": unit,
            "direction": direction,
            **extra,
        },
    }


def cancel(community: str, of: dict[str, Any], minutes: float) -> dict[str, Any]:
    doc = statement(community, 0, minutes=minutes)
    doc.update(kind="cancel", properties={}, refs=[of["event_id"]])
    return doc


def run(settings: Settings, docs: list[bytes]) -> None:
    before = fusion_stats(settings)["consumed"]
    produce(settings, [(b"k", d) for d in docs])
    with running_worker(settings):
        wait_until(lambda: fusion_stats(settings)["consumed"] == before + len(docs), 60, "consumed")


def balances(settings: Settings, status: str = "actual") -> dict[tuple[str, str, str], Any]:
    """(community, direction, unit) -> (quantity, event_id) of my balances."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT community_id, direction, unit, quantity, event_id::text"
            " FROM resource_balance WHERE resource_type = %s AND status = %s",
            (WATER, status),
        ).fetchall()
    return {(c, d, u): (q, e) for c, d, u, q, e in rows}


# --- the contract (pure) ----------------------------------------------------------------------


def test_schema_takes_a_statement_and_keeps_extra_members() -> None:
    props = parse_resource(
        {
            "resource_type": "sandbags",
            "quantity": 40,
            "unit": "bag",
            "direction": "needed",
            "note": "for the creek",
            "contact": "desk 3",
        }
    )
    assert (props.resource_type, props.quantity, props.unit) == ("sandbags", 40.0, "bag")
    assert props.direction == "needed" and props.note == "for the creek"
    assert props.model_extra == {"contact": "desk 3"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resource_type", "Drinking Water"),
        ("resource_type", "9lives"),
        ("quantity", -1),
        ("quantity", "12"),
        ("quantity", True),
        ("quantity", float("inf")),
        ("quantity", float("nan")),
        ("unit", ""),
        ("unit", " litre"),
        ("unit", "x" * 33),
        ("direction", "offered"),
        ("note", 5),
    ],
)
def test_schema_refuses_bad_fields(field: str, value: Any) -> None:
    good = {"resource_type": "water", "quantity": 1.5, "unit": "litre", "direction": "available"}
    with pytest.raises(ValidationError) as caught:
        parse_resource({**good, field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize("missing", ["resource_type", "quantity", "unit", "direction"])
def test_schema_requires_its_fields(missing: str) -> None:
    good = {"resource_type": "water", "quantity": 0, "unit": "litre", "direction": "needed"}
    del good[missing]
    with pytest.raises(ValidationError, match=missing):
        parse_resource(good)


def _record(value: bytes, offset: int) -> Any:
    return SimpleNamespace(value=value, timestamp=0, partition=0, offset=offset, headers=[])


def test_decoder_rejects_bad_resource_properties_naming_the_field() -> None:
    bad = statement(NEEDY, -3)
    no_unit = statement(NEEDY, 3)
    del no_unit["properties"]["unit"]
    not_resource = {**statement(NEEDY, -3), "kind": "observation"}  # free properties
    records = [
        _record(orjson.dumps(d), i)
        for i, d in enumerate([bad, statement(NEEDY, 3), no_unit, not_resource])
    ]
    decoded = decode(records)
    assert decoded.frame["idx"].to_list() == [1, 3]
    assert [(r.index, r.reason) for r in decoded.rejects] == [(0, SCHEMA), (2, SCHEMA)]
    assert decoded.rejects[0].detail.startswith("resource properties.quantity: ")
    assert "properties.unit: Field required" in decoded.rejects[1].detail


@given(
    st.floats(0, 1e9),
    st.lists(st.floats(0, 1e9), max_size=20),
)
def test_greedy_cover_fills_nearest_first_and_adds_up(need: float, offers: list[float]) -> None:
    covers = greedy_cover(need, offers)
    assert len(covers) == len(offers)
    assert all(0 <= c <= o for c, o in zip(covers, offers, strict=True))
    assert sum(covers) == pytest.approx(min(need, sum(offers)), rel=1e-9, abs=1e-6)
    for i, c in enumerate(covers):  # an offer is used only once the nearer ones are exhausted
        if c > 0:
            assert all(covers[j] == pytest.approx(offers[j]) for j in range(i))


# --- the pipeline -----------------------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    docs: dict[str, dict[str, Any]]
    dead: list[Any]


@pytest.fixture(scope="module")
def world(base_settings: Settings, sf_communities: list[str]) -> World:
    settings = own_stream(base_settings, "resources", fusion_incidents=True, **GENEROUS_LIMITS)
    docs = {
        "need": statement(NEEDY, 1000, "needed"),
        "own_surplus": statement(NEEDY, 500),  # never offered to its own community
        "other_need": statement(OTHER_NEEDY, 100, "needed"),
        "bernal": statement("Bernal Heights", 300),
        "castro_old": statement("Castro/Upper Market", 100),
        "castro": statement("Castro/Upper Market", 400, minutes=60),
        "potrero": statement("Potrero Hill", 0),  # nothing to lend
        "noe_bags": statement("Noe Valley", 200, unit="bag"),  # another unit: never matched
        "far": statement(FAR, 5000),
        "glen": statement("Glen Park", 700),
        "drill_offer": statement("Haight Ashbury", 10_000, status="exercise"),
        "drill_need": statement(NEEDY, 80, "needed", status="exercise"),
    }
    run(settings, [orjson.dumps(d) for d in docs.values()])
    bernal_new = statement("Bernal Heights", 50, minutes=60)
    later = {
        "castro_late": statement("Castro/Upper Market", 999, minutes=-60),  # older, arrives late
        "bernal_new": bernal_new,
        "bernal_cancel": cancel("Bernal Heights", bernal_new, 90),
        "glen_cancel": cancel("Glen Park", docs["glen"], 30),
        "foreign_cancel": cancel("Potrero Hill", docs["bernal"], 70),  # not Potrero's to cancel
        "soma_bad": statement("South of Market", -5),
        "soma": statement("South of Market", 250),  # after the bad one: the stream goes on
    }
    run(settings, [orjson.dumps(d) for d in later.values()])
    docs |= later
    dead = consume_all(settings, settings.dlq_topic, expected=1)
    return World(settings, docs, dead)


def test_latest_statement_wins_even_when_an_older_one_arrives_late(world: World) -> None:
    castro = balances(world.settings)[("Castro/Upper Market", "available", LITRE)]
    assert castro == (400.0, world.docs["castro"]["event_id"])


def test_a_cancel_falls_back_to_the_statement_before(world: World) -> None:
    found = balances(world.settings)
    assert found[("Bernal Heights", "available", LITRE)] == (
        300.0,
        world.docs["bernal"]["event_id"],
    )
    assert ("Glen Park", "available", LITRE) not in found, "its only statement was withdrawn"


def test_stock_and_needs_per_community(world: World) -> None:
    found = {k: q for k, (q, _) in balances(world.settings).items()}
    assert found == {
        (NEEDY, "needed", LITRE): 1000.0,
        (NEEDY, "available", LITRE): 500.0,
        (OTHER_NEEDY, "needed", LITRE): 100.0,
        ("Bernal Heights", "available", LITRE): 300.0,
        ("Castro/Upper Market", "available", LITRE): 400.0,
        ("Potrero Hill", "available", LITRE): 0.0,
        ("Noe Valley", "available", "bag"): 200.0,
        (FAR, "available", LITRE): 5000.0,
        ("South of Market", "available", LITRE): 250.0,
    }
    drills = {k: q for k, (q, _) in balances(world.settings, "exercise").items()}
    assert drills == {
        ("Haight Ashbury", "available", LITRE): 10_000.0,
        (NEEDY, "needed", LITRE): 80.0,
    }


def test_an_invalid_resource_event_is_dead_lettered_and_the_stream_goes_on(world: World) -> None:
    mine = [
        r
        for r in world.dead
        if orjson.loads(r.value)["event_id"] == world.docs["soma_bad"]["event_id"]
    ]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert headers[REASON].decode() == "schema_violation"
    assert "properties.quantity" in headers[DETAIL].decode()
    with connect(world.settings) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM event WHERE event_id = %s", (world.docs["soma_bad"]["event_id"],)
        ).fetchone()
    assert stored == (0,)
    assert balances(world.settings)[("South of Market", "available", LITRE)][0] == 250.0
    assert Counter(dict(r.headers)[REASON].decode() for r in world.dead) == {"schema_violation": 1}


# --- the stage on its own, in one transaction (cases a broker cannot order for sure) ------------


def _insert(conn: Any, doc: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO event (event_id, community_id, kind, category, severity, urgency,"
        " certainty, status, event_type, observed_at, geom, source_system, source_connector,"
        " properties, refs, kafka_partition, kafka_offset) VALUES (%s, %s, %s, 'Other',"
        " 'Unknown', 'Unknown', 'Unknown', %s, 'resource_statement', %s,"
        " ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), 'aid-desk', 'test', %s, %s::uuid[], 0, 0)",
        (
            doc["event_id"],
            doc["community_id"],
            doc["kind"],
            doc["status"],
            doc["observed_at"],
            json.dumps(doc["geometry"]),
            json.dumps(doc["properties"]),
            doc.get("refs", []),
        ),
    )
    conn.execute("INSERT INTO fusion_new (event_id) VALUES (%s)", (doc["event_id"],))


def _batch(conn: Any, docs: list[dict[str, Any]]) -> None:
    with conn.transaction():
        for doc in docs:
            _insert(conn, doc)
        ResourceStage().apply(conn)


@pytest.fixture
def stage_conn(base_settings: Settings, sf_communities: list[str]) -> Iterator[Any]:
    with connect(base_settings, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE fusion_new (event_id uuid) ON COMMIT DELETE ROWS")
        yield conn


def _balance(conn: Any, rtype: str) -> Any:
    return conn.execute(
        "SELECT quantity, event_id::text, ST_AsText(geom) FROM resource_balance"
        " WHERE resource_type = %s",
        (rtype,),
    ).fetchall()


def test_a_cancel_that_arrives_first_keeps_its_statement_out(stage_conn: Any) -> None:
    rtype = f"blankets_{uuid.uuid4().hex[:8]}"
    first = statement("Chinatown", 10, resource_type=rtype)
    second = statement("Chinatown", 20, resource_type=rtype, minutes=5)
    _batch(stage_conn, [first, cancel("Chinatown", second, 6)])
    assert _balance(stage_conn, rtype)[0][:2] == (10.0, first["event_id"])
    _batch(stage_conn, [second])  # withdrawn before it arrived
    assert _balance(stage_conn, rtype)[0][:2] == (10.0, first["event_id"])


def test_ties_go_to_the_greater_event_id_and_a_line_gets_a_point(stage_conn: Any) -> None:
    rtype = f"cots_{uuid.uuid4().hex[:8]}"
    a, b = (
        statement("Japantown", 1, resource_type=rtype),
        statement("Japantown", 2, resource_type=rtype),
    )
    x, y = _point("Japantown")
    b["geometry"] = {"type": "LineString", "coordinates": [[x, y], [x + 1e-4, y]]}
    _batch(stage_conn, [a, b])
    winner = max(a, b, key=lambda d: uuid.UUID(d["event_id"]))
    ((quantity, event_id, point),) = _balance(stage_conn, rtype)
    assert (quantity, event_id) == (winner["properties"]["quantity"], winner["event_id"])
    assert point.startswith("POINT(")  # on the statement's line


def test_odd_stored_properties_are_left_out_without_failing_the_batch(stage_conn: Any) -> None:
    rtype = f"tarps_{uuid.uuid4().hex[:8]}"
    good = statement("Marina", 7, resource_type=rtype)
    odd = statement("Marina", "lots", resource_type=rtype, minutes=5)  # the decoder would refuse
    _batch(stage_conn, [good, odd])
    assert _balance(stage_conn, rtype)[0][:2] == (7.0, good["event_id"])


# --- the API ----------------------------------------------------------------------------------


def _distance(a: str, b: str) -> float:
    (x1, y1), (x2, y2) = _point(a), _point(b)
    return float(GEOD.inv(x1, y1, x2, y2)[2])


def _offers_for(needy: str, sees: set[str] | None = None) -> list[tuple[str, float]]:
    """My actual litre offers other than ``needy``'s with something to lend, nearest first."""
    stock = {"Bernal Heights": 300.0, "Castro/Upper Market": 400.0, FAR: 5000.0}
    stock |= {"South of Market": 250.0, NEEDY: 500.0}
    return sorted(
        ((c, q) for c, q in stock.items() if c != needy and (sees is None or c in sees)),
        key=lambda cq: (_distance(needy, cq[0]), cq[0]),
    )


def _area(community: str) -> MultiPolygon:
    poly = POLYS[community]
    return poly if isinstance(poly, MultiPolygon) else MultiPolygon([poly])


@pytest.fixture(scope="module")
def app(world: World) -> Any:
    return create_app(world.settings)


def _get(http: TestClient, path: str, **params: Any) -> Any:
    response = http.get(path, params={"resource_type": WATER, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _check_match(need: dict[str, Any], expected: list[tuple[str, float]]) -> None:
    offers = need["offers"]
    assert [(o["community_id"], o["quantity"]) for o in offers] == expected
    for o in offers:
        assert o["distance_m"] == pytest.approx(
            _distance(need["community_id"], o["community_id"]), abs=1.0
        )
    covers = greedy_cover(need["quantity"], [q for _, q in expected])
    assert [o["covers"] for o in offers] == pytest.approx(covers)
    assert need["covered"] == pytest.approx(sum(o["covers"] for o in offers))
    assert need["covered"] == pytest.approx(min(need["quantity"], sum(q for _, q in expected)))
    assert need["shortfall"] == pytest.approx(need["quantity"] - need["covered"])


def test_community_sees_every_real_balance_and_its_own_drills(app: Any, world: World) -> None:
    with signed_in(app, world.settings, "community", community_id=NEEDY) as http:
        body = _get(http, "/v1/resources", limit=1000)
        assert body["type"] == "FeatureCollection"
        found = {
            (
                f["properties"]["community_id"],
                f["properties"]["direction"],
                f["properties"]["unit"],
            ): f
            for f in body["features"]
        }
        assert set(found) == set(balances(world.settings))
        need = found[(NEEDY, "needed", LITRE)]
        assert need["geometry"]["type"] == "Point"
        assert need["geometry"]["coordinates"] == pytest.approx(_point(NEEDY), abs=1e-8)
        assert need["properties"]["event_id"] == world.docs["need"]["event_id"]
        assert need["properties"]["observed_at"] == "2034-03-01T01:00:00Z"
        drills = _get(http, "/v1/resources", status="exercise")["features"]
        assert [(f["properties"]["community_id"], f["properties"]["quantity"]) for f in drills] == [
            (NEEDY, 80.0)
        ], "its own drill, not Haight Ashbury's"
        needed = _get(http, "/v1/resources", direction="needed", community=OTHER_NEEDY)
        assert [f["properties"]["quantity"] for f in needed["features"]] == [100.0]


def test_pages_follow_next_links(app: Any, world: World) -> None:
    with signed_in(app, world.settings, "analyst") as http:
        seen, url = [], f"/v1/resources?resource_type={WATER}&limit=4"
        pages = 0
        while url:
            body = http.get(url).json()
            pages += 1
            seen += [f["properties"]["event_id"] for f in body["features"]]
            nxt = [urlsplit(li["href"]) for li in body["links"] if li["rel"] == "next"]
            url = f"{nxt[0].path}?{nxt[0].query}" if nxt else ""
        assert pages == 3, "9 balances, 4 a page"
        assert sorted(seen) == sorted(e for _, e in balances(world.settings).values())


def test_matches_nearest_surplus_first_never_the_needy_itself(app: Any, world: World) -> None:
    with signed_in(app, world.settings, "community", community_id=NEEDY) as http:
        body = _get(http, "/v1/resources/matches")
        assert [n["community_id"] for n in body["needs"]] == [NEEDY], "its own needs by default"
        need = body["needs"][0]
        assert (need["quantity"], need["unit"], need["event_id"]) == (
            1000.0,
            LITRE,
            world.docs["need"]["event_id"],
        )
        _check_match(need, _offers_for(NEEDY)[:3])
        everyone = _get(http, "/v1/resources/matches", per_need=20)["needs"][0]
        _check_match(everyone, _offers_for(NEEDY))
        assert everyone["covered"] == 1000.0 and everyone["shortfall"] == 0.0
        assert FAR in [o["community_id"] for o in everyone["offers"]]
        limit = (
            _distance(NEEDY, FAR) + max(_distance(NEEDY, c) for c, _ in _offers_for(NEEDY)[:-1])
        ) / 2
        near = _get(http, "/v1/resources/matches", per_need=20, max_distance_m=limit)["needs"][0]
        assert FAR not in [o["community_id"] for o in near["offers"]]
        _check_match(near, [cq for cq in _offers_for(NEEDY) if cq[0] != FAR])
        other = _get(http, "/v1/resources/matches", community=OTHER_NEEDY, per_need=20)["needs"]
        _check_match(other[0], _offers_for(OTHER_NEEDY))
        assert NEEDY in [o["community_id"] for o in other[0]["offers"]], "its surplus helps others"


def test_drills_stay_apart(app: Any, world: World) -> None:
    with signed_in(app, world.settings, "admin") as http:
        actual = _get(http, "/v1/resources/matches", per_need=20)["needs"]
        assert {n["community_id"] for n in actual} == {NEEDY, OTHER_NEEDY}
        offered = {o["community_id"] for n in actual for o in n["offers"]}
        assert "Haight Ashbury" not in offered and all(n["status"] == "actual" for n in actual)
        listed = _get(http, "/v1/resources", limit=1000)["features"]
        assert "Haight Ashbury" not in {f["properties"]["community_id"] for f in listed}
        drill = _get(http, "/v1/resources/matches", status="exercise")["needs"]
        assert [(n["community_id"], n["quantity"]) for n in drill] == [(NEEDY, 80.0)]
        _check_match(drill[0], [("Haight Ashbury", 10_000.0)])


def test_department_sees_the_communities_its_jurisdiction_touches(app: Any, world: World) -> None:
    served = {c for c, p in POLYS.items() if p.intersects(POLYS[NEEDY])}
    assert FAR not in served and "Bernal Heights" in served
    with signed_in(app, world.settings, "department", jurisdiction=_area(NEEDY)) as http:
        listed = _get(http, "/v1/resources", limit=1000)["features"]
        expected = {k for k in balances(world.settings) if k[0] in served}
        assert {
            (f["properties"]["community_id"], f["properties"]["direction"], f["properties"]["unit"])
            for f in listed
        } == expected
        needs = _get(http, "/v1/resources/matches", per_need=20)["needs"]
        assert {n["community_id"] for n in needs} == {NEEDY, OTHER_NEEDY} & served
        mission = next(n for n in needs if n["community_id"] == NEEDY)
        _check_match(mission, _offers_for(NEEDY, served))


def test_no_token_is_401_and_no_scope_is_403(app: Any, world: World) -> None:
    registered, secret = register(world.settings, kind="community", community_id=NEEDY)
    assert secret is not None
    with TestClient(app, client=LOOPBACK_PEER) as http:
        for path in ("/v1/resources", "/v1/resources/matches"):
            anonymous = http.get(path)
            assert anonymous.status_code == 401 and anonymous.headers["content-type"] == PROBLEM
        narrow = token_for(http, registered.client_id, secret, scope="incidents:read")
        for path in ("/v1/resources", "/v1/resources/matches"):
            denied = http.get(path, headers=bearer(narrow))
            assert denied.status_code == 403 and denied.headers["content-type"] == PROBLEM
            assert "resources:read" in denied.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/resources/matches", {"per_need": "21"}),
        ("/v1/resources/matches", {"max_distance_m": "-1"}),
        ("/v1/resources/matches", {"max_distance_m": "nan"}),
        ("/v1/resources", {"direction": "offered"}),
        ("/v1/resources", {"status": "Exercise"}),
        ("/v1/resources", {"cursor": "not-ours"}),
        ("/v1/resources", {"community": "Mission\x00"}),
    ],
)
def test_bad_parameters_are_problems(
    app: Any, world: World, path: str, params: dict[str, str]
) -> None:
    with signed_in(app, world.settings, "analyst") as http:
        response = http.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
