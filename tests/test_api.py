"""The HTTP API on real PostGIS: filters, pagination, problem+json errors, probes, metrics.

The database is shared by the whole test session, so this module marks its rows with a source
system of its own, removes them at the end, and computes every expectation with SQL over the
whole table (other modules may have left events there) or, for my rows only, in Python.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from shapely.geometry import Point, box

from hub.api.factory import create_app
from hub.settings import Settings
from hub.stack.broker import free_port
from hub.store.communities import import_communities
from hub.store.db import connect
from tests.auth_helpers import LOOPBACK_PEER, signed_in
from tests.conftest import DATA

SOURCE = f"test-api-{uuid.uuid4().hex[:8]}"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://community-risk-hub.test/api-fixture")
LA = ZoneInfo("America/Los_Angeles")
PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
CATEGORY = {
    "Arson": "Fire",
    "Fire Report": "Fire",
    "Traffic Collision": "Transport",
    "Missing Person": "Rescue",
}


@dataclass(frozen=True)
class Row:
    event_id: str
    community: str
    category: str
    event_type: str
    observed_at: datetime
    lon: float
    lat: float
    refs: tuple[str, ...]
    properties: dict[str, Any]


def read_rows(every: int = 3) -> list[Row]:
    """Every ``every``-th SFPD row with coordinates, as the fixture events."""
    rows: list[Row] = []
    with (DATA / "sfpd_incident_reports_2018-12.csv").open(newline="", encoding="utf-8") as f:
        for n, rec in enumerate(csv.DictReader(f)):
            if n % every or not rec["Latitude"] or not rec["Analysis Neighborhood"]:
                continue
            local = datetime.strptime(rec["Incident Datetime"], "%Y/%m/%d %I:%M:%S %p")
            refs = (rows[-1].event_id,) if len(rows) % 50 == 49 else ()
            rows.append(
                Row(
                    event_id=str(uuid.uuid5(NAMESPACE, rec["Row ID"])),
                    community=rec["Analysis Neighborhood"],
                    category=CATEGORY.get(rec["Incident Category"], "Security"),
                    event_type=re.sub(r"[^a-z0-9]+", "_", rec["Incident Category"].lower()).strip(
                        "_"
                    ),
                    observed_at=local.replace(tzinfo=LA).astimezone(UTC),
                    lon=float(rec["Longitude"]),
                    lat=float(rec["Latitude"]),
                    refs=refs,
                    properties={
                        "row_id": rec["Row ID"],
                        "description": rec["Incident Description"],
                    },
                )
            )
    return rows


COPY_EVENTS = """
COPY event (event_id, community_id, kind, category, severity, urgency, certainty, status,
            event_type, observed_at, geom, source_system, source_connector, reporter,
            properties, refs, kafka_partition, kafka_offset) FROM STDIN
"""

STATS_FROM_MY_ROWS = """
INSERT INTO community_stats AS cs (community_id, events_stored, last_event_at, last_observed_at)
SELECT community_id, count(*), max(ingested_at), max(observed_at)
FROM event WHERE source_system = %s GROUP BY community_id
ON CONFLICT (community_id) DO UPDATE SET
    events_stored = cs.events_stored + EXCLUDED.events_stored,
    last_event_at = GREATEST(cs.last_event_at, EXCLUDED.last_event_at),
    last_observed_at = GREATEST(cs.last_observed_at, EXCLUDED.last_observed_at)
"""


def load(conn: psycopg.Connection, rows: list[Row]) -> None:
    with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        for offset, r in enumerate(rows):
            copy.write_row(
                (
                    r.event_id,
                    r.community,
                    "incident",
                    r.category,
                    "Moderate",
                    "Past",
                    "Observed",
                    "actual",
                    r.event_type,
                    r.observed_at,
                    f"SRID=4326;POINT({r.lon!r} {r.lat!r})",
                    SOURCE,
                    "sfpd-csv",
                    None,
                    Jsonb(r.properties),
                    "{" + ",".join(r.refs) + "}",
                    0,
                    offset,
                )
            )
    conn.execute(STATS_FROM_MY_ROWS, (SOURCE,))


@pytest.fixture(scope="module")
def db(base_settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(base_settings, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def rows(db: psycopg.Connection) -> Iterator[list[Row]]:
    import_communities(db, DATA / "sf_analysis_neighborhoods.geojson", "nhood", "nhood")
    stats = db.execute("SELECT * FROM community_stats").fetchall()  # restored at the end
    data = read_rows()
    with db.transaction():
        load(db, data)
    try:
        yield data
    finally:
        with db.transaction():
            db.execute("DELETE FROM event WHERE source_system = %s", (SOURCE,))
            db.execute("DELETE FROM community_stats")
            with db.cursor() as cur:
                cur.executemany("INSERT INTO community_stats VALUES (%s, %s, %s, %s)", stats)


@pytest.fixture(scope="module")
def client(base_settings: Settings, rows: list[Row]) -> Iterator[TestClient]:
    with signed_in(create_app(base_settings), base_settings) as c:  # an admin: sees every row
        yield c


def sql_ids(db: psycopg.Connection, where: str, params: tuple[Any, ...] = ()) -> set[str]:
    return {r[0] for r in db.execute(f"SELECT event_id::text FROM event WHERE {where}", params)}


def fetch_all(
    client: TestClient, params: dict[str, str], limit: int = 10_000
) -> list[dict[str, Any]]:
    """Every feature of a filtered collection, following next links."""
    features: list[dict[str, Any]] = []
    response = client.get("/v1/events", params={**params, "limit": str(limit)})
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        features += body["features"]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nxt:
            return features
        response = client.get(nxt[0])


def ids(features: list[dict[str, Any]]) -> set[str]:
    found = [f["id"] for f in features]
    assert len(found) == len(set(found)), "an event came twice"
    return set(found)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and "instance" in body and "detail" in body
    return body


def utc_z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- one event ------------------------------------------------------------------------------


def test_event_by_id_carries_the_contract(client: TestClient, rows: list[Row]) -> None:
    row = next(r for r in rows if r.refs)
    response = client.get(f"/v1/events/{row.event_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == GEOJSON
    feature = response.json()
    assert feature["type"] == "Feature" and feature["id"] == row.event_id
    assert feature["geometry"]["type"] == "Point"
    assert feature["geometry"]["coordinates"] == pytest.approx([row.lon, row.lat], abs=1e-9)
    props = feature["properties"]
    assert props["community_id"] == row.community
    assert (props["category"], props["event_type"]) == (row.category, row.event_type)
    assert (props["kind"], props["severity"], props["status"]) == ("incident", "Moderate", "actual")
    assert props["observed_at"] == utc_z(row.observed_at) and props["observed_at"].endswith("Z")
    assert props["ingested_at"].endswith("Z")
    assert props["source"] == {"system": SOURCE, "connector": "sfpd-csv", "reporter": None}
    assert props["properties"] == row.properties
    assert props["refs"] == list(row.refs)
    assert isinstance(props["seq"], int)
    assert {
        "rel": "self",
        "href": f"http://testserver/v1/events/{row.event_id}",
        "type": GEOJSON,
    } in feature["links"]


def test_unknown_event_is_404_and_bad_id_is_400(client: TestClient) -> None:
    body = assert_problem(client.get(f"/v1/events/{uuid.uuid4()}"), 404)
    assert body["instance"].startswith("/v1/events/")
    assert_problem(client.get("/v1/events/not-a-uuid"), 400)


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "community", ["Bayview Hunters Point", "Financial District/South Beach", "Mission"]
)
def test_community_filter(
    client: TestClient, db: psycopg.Connection, rows: list[Row], community: str
) -> None:
    features = fetch_all(client, {"community": community})
    found = ids(features)
    assert found == sql_ids(db, "community_id = %s", (community,))
    mine = {r.event_id for r in rows}
    assert found & mine == {r.event_id for r in rows if r.community == community}
    assert found & mine, "the fixture has events in this community"
    assert {f["properties"]["community_id"] for f in features} == {community}


def test_community_filter_percent_encoded(client: TestClient, db: psycopg.Connection) -> None:
    response = client.get("/v1/events?community=Financial%20District%2FSouth%20Beach&limit=10")
    assert response.status_code == 200
    # every page, however many events earlier tests left in the shared database
    features = response.json()["features"]
    features += fetch_all(client, {"community": "Financial District/South Beach"})[10:]
    expected = sql_ids(db, "community_id = 'Financial District/South Beach'")
    assert ids(features) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"category": "Fire"},
        {"event_type": "larceny_theft"},
        {"category": "Security", "event_type": "robbery", "community": "Tenderloin"},
        {"community": "No Such Place"},
    ],
)
def test_category_and_event_type_filters(
    client: TestClient, db: psycopg.Connection, rows: list[Row], params: dict[str, str]
) -> None:
    columns = {"category": "category", "event_type": "event_type", "community": "community_id"}
    where = " AND ".join(f"{columns[k]} = %s" for k in params)
    found = ids(fetch_all(client, params))
    assert found == sql_ids(db, where, tuple(params.values()))
    attrs = {"category": "category", "event_type": "event_type", "community": "community"}
    mine = {r.event_id for r in rows if all(getattr(r, attrs[k]) == v for k, v in params.items())}
    assert found & {r.event_id for r in rows} == mine


def test_bbox_matches_shapely(client: TestClient, db: psycopg.Connection, rows: list[Row]) -> None:
    # A point exactly on the west edge: intersects includes the boundary.
    edge = next(r for r in rows if r.community == "Tenderloin")
    bounds = (edge.lon, edge.lat - 0.006, edge.lon + 0.01, edge.lat + 0.005)
    found = ids(fetch_all(client, {"bbox": ",".join(repr(v) for v in bounds)}))
    reference = box(*bounds)
    mine = {r.event_id for r in rows if reference.intersects(Point(r.lon, r.lat))}
    assert edge.event_id in found
    assert found & {r.event_id for r in rows} == mine
    assert 10 < len(mine) < len(rows)
    where = "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
    assert found == sql_ids(db, where, bounds)


def test_since_until_boundaries(
    client: TestClient, db: psycopg.Connection, rows: list[Row]
) -> None:
    t = sorted(r.observed_at for r in rows)[len(rows) // 2]
    at_t = {r.event_id for r in rows if r.observed_at == t}
    local = t.astimezone(LA).isoformat()  # -08:00: the offset is honoured, not dropped
    after = ids(fetch_all(client, {"since": local}))
    before = ids(fetch_all(client, {"until": utc_z(t)}))
    mine = {r.event_id for r in rows}
    assert at_t and at_t <= after and not at_t & before  # since inclusive, until exclusive
    assert after & mine == {r.event_id for r in rows if r.observed_at >= t}
    assert before & mine == {r.event_id for r in rows if r.observed_at < t}
    assert after == sql_ids(db, "observed_at >= %s", (t,))
    assert before == sql_ids(db, "observed_at < %s", (t,))
    window = {"since": utc_z(t), "until": utc_z(t + timedelta(hours=6))}
    inside = ids(fetch_all(client, window))
    assert inside == sql_ids(
        db, "observed_at >= %s AND observed_at < %s", (t, t + timedelta(hours=6))
    )


# --- pagination -----------------------------------------------------------------------------


def test_walk_every_page(client: TestClient, db: psycopg.Connection, rows: list[Row]) -> None:
    window = {"since": "2018-12-01T00:00:00-08:00", "until": "2019-01-01T00:00:00-08:00"}
    response = client.get("/v1/events", params={**window, "limit": "137"})
    seqs: list[int] = []
    visited: list[str] = []
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert body["numberReturned"] == len(body["features"])
        seqs += [f["properties"]["seq"] for f in body["features"]]
        visited += [f["id"] for f in body["features"]]
        links = {link["rel"]: link for link in body["links"]}
        assert links["self"]["href"].startswith("http://testserver/v1/events?")
        if "next" not in links:
            break
        assert len(body["features"]) == 137
        href = links["next"]["href"]
        assert href.startswith("http://testserver/v1/events?") and "limit=137" in href
        assert links["next"]["type"] == GEOJSON
        response = client.get(href)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len(visited) == len(set(visited))
    december = (datetime(2018, 12, 1, tzinfo=LA), datetime(2019, 1, 1, tzinfo=LA))
    expected = sql_ids(db, "observed_at >= %s AND observed_at < %s", december)
    assert set(visited) == expected
    assert {r.event_id for r in rows} <= expected
    assert pages == -(-len(expected) // 137)


def test_next_link_keeps_filters(client: TestClient, db: psycopg.Connection) -> None:
    body = client.get(
        "/v1/events", params={"community": "Bayview Hunters Point", "limit": "50"}
    ).json()
    href = next(link["href"] for link in body["links"] if link["rel"] == "next")
    assert "community=Bayview%20Hunters%20Point" in href
    second = client.get(href).json()
    assert {f["properties"]["community_id"] for f in second["features"]} == {
        "Bayview Hunters Point"
    }
    last_seq = body["features"][-1]["properties"]["seq"]
    assert all(f["properties"]["seq"] > last_seq for f in second["features"])


def test_links_use_public_url(base_settings: Settings, rows: list[Row]) -> None:
    settings = base_settings.model_copy(update={"public_url": "https://hub.example.org/api/"})
    with signed_in(create_app(settings), settings) as c:
        body = c.get("/v1/events", params={"limit": "1"}).json()
    hrefs = {link["rel"]: link["href"] for link in body["links"]}
    assert hrefs["self"] == "https://hub.example.org/api/v1/events?limit=1"
    assert hrefs["next"].startswith("https://hub.example.org/api/v1/events?limit=1&cursor=")


# --- bad parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=10001",
        "limit=0",
        "limit=-5",
        "limit=ten",
        "since=2018-12-01T00:00:00",
        "since=2018-12-01",
        "since=yesterday",
        "until=2018-12-01T00:00:00 08:00",
        "until=2018-13-01T00:00:00Z",
        "bbox=1,2,3",
        "bbox=1,2,3,4,5",
        "bbox=a,b,c,d",
        "bbox=-122.4,37.8,-122.5,37.9",
        "bbox=-122.5,37.9,-122.4,37.8",
        "bbox=-190,0,10,10",
        "bbox=0,-91,10,10",
        "bbox=nan,0,1,1",
        "cursor=!!!",
        "cursor=bm90LWEtc2Vx",
        "cursor=",
        "community=",
        "community=Mission%00",
        "event_type=%00",
    ],
)
def test_bad_parameters_are_400_problems(client: TestClient, query: str) -> None:
    body = assert_problem(client.get(f"/v1/events?{query}"), 400)
    assert body["instance"] == "/v1/events"
    assert query.split("=")[0] in body["detail"]


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.delete("/v1/events"), 405)


def test_server_error_is_a_problem(base_settings: Settings, client: TestClient) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(base_settings.model_copy(update={"database_url": closed}))
    token = {"Authorization": client.headers["Authorization"]}  # checking it needs the database
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK_PEER, headers=token) as c:
        body = assert_problem(c.get("/v1/communities"), 500)
        assert "nowhere" not in body["detail"]  # internals stay in the log
        metrics = c.get("/metrics").text
    assert 'route="/v1/communities",status="500"' in metrics


# --- communities ----------------------------------------------------------------------------


def test_communities_with_silent_flags(
    base_settings: Settings, db: psycopg.Connection, rows: list[Row]
) -> None:
    quiet = 600
    old, recent, never = "Mission", "Tenderloin", "Seacliff"
    with db.transaction():
        set_last = "UPDATE community_stats SET last_event_at = now() - %s WHERE community_id = %s"
        db.execute(set_last, (timedelta(seconds=quiet + 60), old))
        db.execute(set_last, (timedelta(seconds=10), recent))
        db.execute("DELETE FROM community_stats WHERE community_id = %s", (never,))
    settings = base_settings.model_copy(update={"community_quiet_period_s": quiet})
    with signed_in(create_app(settings), settings, kind="analyst") as c:
        response = c.get("/v1/communities")
    assert response.status_code == 200 and response.headers["content-type"] == GEOJSON
    body = response.json()
    assert body["numberReturned"] == len(body["features"]) == 41
    props = {f["id"]: f["properties"] for f in body["features"]}
    assert (props[old]["silent"], props[recent]["silent"], props[never]["silent"]) == (
        True,
        False,
        True,
    )
    assert props[never]["events_stored"] == 0 and props[never]["last_event_at"] is None
    assert {f["geometry"]["type"] for f in body["features"]} == {"MultiPolygon"}
    expected = db.execute(
        "SELECT c.id, coalesce(s.events_stored, 0), s.last_event_at,"
        " coalesce(s.last_event_at < now() - make_interval(secs => %s), true)"
        " FROM community c LEFT JOIN community_stats s ON s.community_id = c.id",
        (quiet,),
    ).fetchall()
    for cid, stored, last, silent in expected:
        assert props[cid]["events_stored"] == stored
        assert props[cid]["last_event_at"] == (utc_z(last) if last else None)
        assert props[cid]["silent"] is silent, cid


# --- probes and metrics ---------------------------------------------------------------------


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "kafka": "ok"}}


def test_readyz_names_what_is_down(base_settings: Settings) -> None:
    dead_kafka = base_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(dead_kafka)) as c:
        started = datetime.now(UTC)
        body = assert_problem(c.get("/readyz"), 503)
        assert datetime.now(UTC) - started < timedelta(seconds=4)
    assert "kafka" in body["detail"] and "database" not in body["detail"]
    assert body["checks"]["database"] == "ok"
    dead_db = base_settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
    )
    with TestClient(create_app(dead_db)) as c:
        body = assert_problem(c.get("/readyz"), 503)
    assert "database" in body["detail"] and "kafka" not in body["detail"]


def test_metrics_count_requests_by_route_template(base_settings: Settings, rows: list[Row]) -> None:
    with (
        signed_in(create_app(base_settings), base_settings) as c,
        TestClient(create_app(base_settings)) as other,
    ):
        for _ in range(3):
            c.get(f"/v1/events/{rows[0].event_id}")
        c.get(f"/v1/events/{uuid.uuid4()}")
        c.get("/v1/events?limit=0")
        c.get("/no/such/route")
        other.get("/healthz")
        text = c.get("/metrics").text
    assert (
        'hub_api_requests_total{method="GET",route="/v1/events/{event_id}",status="200"} 3.0'
        in text
    )
    assert (
        'hub_api_requests_total{method="GET",route="/v1/events/{event_id}",status="404"} 1.0'
        in text
    )
    assert 'hub_api_requests_total{method="GET",route="/v1/events",status="400"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "hub_api_request_duration_seconds_bucket" in text
    assert "hub_api_requests_in_flight 1.0" in text  # the /metrics request itself
    assert "/healthz" not in text  # the other app's registry is its own
