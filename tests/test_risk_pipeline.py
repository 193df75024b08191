"""Risk per grid cell through the real pipeline (broker, fusion worker, PostGIS) and
``GET /v1/risk``: a corroborated fire raises its cell, the picture clock decays it, drills have
a picture of their own, and each principal sees the cells of its reach.

Places are real: locations of real SFPD incidents (December 2018) in neighbourhoods no other
test reports in. Times are a day before the wall clock: the picture clock never moves more than
``stage.clock_lead`` beyond the database's clock, and the database is shared by the session, so
each test first puts the clocks of its pictures at its own start (``picture_at``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point

from hub.api.factory import create_app
from hub.bench.fusion_quality import TrueIncident, true_incidents
from hub.settings import Settings
from hub.store.db import connect
from tests.auth_helpers import signed_in
from tests.fusion_helpers import GENEROUS_LIMITS, own_stream
from tests.test_incidents import _polygons, report, run

FIRE = "Twin Peaks"  # the fire of the decay test
DRILL = "Inner Sunset"  # a drill where nothing real happens
ELSEWHERE = "Treasure Island"  # later events that only move the clock
CANCELLED = "Lone Mountain/USF"  # an alarm withdrawn
OWN, NEIGHBOUR, FAR = "Inner Richmond", "Outer Richmond", "Visitacion Valley"
PROBLEM = "application/problem+json"
UTM_10N = Transformer.from_crs(4326, 32610, always_xy=True)
POLYS = _polygons()


@pytest.fixture(scope="module")
def settings(base_settings: Settings) -> Settings:
    """Topics and a consumer group of this module's own (the database is the session's)."""
    return own_stream(base_settings, "risk", **GENEROUS_LIMITS)


@pytest.fixture(scope="module")
def places() -> dict[str, list[TrueIncident]]:
    """Real SFPD incident locations per neighbourhood."""
    out: dict[str, list[TrueIncident]] = {}
    for inc in true_incidents():
        out.setdefault(inc.community, []).append(inc)
    return out


def at(place: TrueIncident) -> tuple[float, float]:
    return place.lon, place.lat


def metric(geom: Any) -> Any:
    return shapely.transform(geom, lambda x, y: UTM_10N.transform(x, y), interleaved=False)


def metres_from(community: str, place: TrueIncident) -> float:
    return float(metric(POLYS[community]).distance(metric(Point(at(place)))))


def event(
    place: TrueIncident, when: datetime, *, reporter: str, status: str = "actual", **fields: Any
) -> dict[str, Any]:
    doc = report(at(place), place.community, reporter=reporter, status=status, **fields)
    doc["observed_at"] = when.isoformat()
    return doc


def area(community: str) -> MultiPolygon:
    polygon = POLYS[community]
    return polygon if isinstance(polygon, MultiPolygon) else MultiPolygon([polygon])


def picture_at(settings: Settings, start: datetime) -> None:
    """The clocks of the actual and exercise pictures put at ``start`` (other tests of the
    session moved them; a picture clock never goes backwards by itself)."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO picture_clock (status, at) VALUES ('actual', %s), ('exercise', %s)"
            " ON CONFLICT (status) DO UPDATE SET at = EXCLUDED.at",
            (start, start),
        )


def cell_of(settings: Settings, doc: dict[str, Any]) -> str:
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT grid_cell FROM event WHERE event_id = %s", (doc["event_id"],)
        ).fetchone()
    assert row is not None and row[0] is not None
    return str(row[0])


def risk_row(settings: Settings, status: str, cell: str) -> dict[str, Any] | None:
    with connect(settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM risk_cell WHERE status = %s AND grid_cell = %s", (status, cell)
        ).fetchone()


def start_of_test() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


def features(http: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    """grid_cell -> feature, every page followed."""
    out: dict[str, dict[str, Any]] = {}
    r = http.get("/v1/risk", params=params)
    while True:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/geo+json"
        body = r.json()
        assert body["numberReturned"] == len(body["features"])
        out |= {f["id"]: f for f in body["features"]}
        nxt = [x["href"] for x in body["links"] if x["rel"] == "next"]
        if not nxt:
            return out
        r = http.get(nxt[0])


# --- a fire, its decay, and a drill -------------------------------------------------------------


def test_a_corroborated_fire_raises_its_cell_and_the_picture_clock_decays_it(
    settings: Settings, sf_communities: list[str], places: dict[str, list[TrueIncident]]
) -> None:
    t0 = start_of_test()
    picture_at(settings, t0)
    fire, drill, elsewhere = places[FIRE][0], places[DRILL][0], places[ELSEWHERE][0]
    # Two neighbours report the fire from the same address; a drill plays a fire there too,
    # and another one where nothing real happens.
    docs = [
        event(fire, t0, reporter="ann"),
        event(fire, t0 + timedelta(minutes=3), reporter="ben"),
        event(fire, t0, reporter="cid", status="exercise"),
        event(fire, t0 + timedelta(minutes=2), reporter="dee", status="exercise"),
        event(drill, t0 + timedelta(minutes=3), reporter="eve", status="exercise"),
        event(drill, t0 + timedelta(minutes=3), reporter="fay", status="exercise"),
    ]
    run(settings, docs)
    cell, drill_cell = cell_of(settings, docs[0]), cell_of(settings, docs[4])
    assert cell_of(settings, docs[1]) == cell and cell != drill_cell
    real = risk_row(settings, "actual", cell)
    assert real is not None and real["level"] in ("orange", "red")
    assert real["incidents"] == 1 and real["score"] == pytest.approx(4.0)  # Severe, corroborated
    assert real["as_of"] == real["level_since"] == t0 + timedelta(minutes=3)
    assert real["community_id"] == FIRE
    played = risk_row(settings, "exercise", cell)
    assert played is not None and played["level"] in ("orange", "red")
    assert risk_row(settings, "actual", drill_cell) is None  # drills never make real risk
    assert risk_row(settings, "exercise", drill_cell) is not None

    # What an analyst reads: the real fire by default, the drills when asked.
    with signed_in(create_app(settings), settings, "analyst") as http:
        actual = features(http, limit="1000")
        assert actual[cell]["properties"]["level"] == real["level"]
        assert actual[cell]["properties"]["status"] == "actual"
        assert actual[cell]["geometry"]["type"] == "MultiPolygon"
        assert drill_cell not in actual
        drills = features(http, status="exercise", limit="1000")
        assert {cell, drill_cell} <= drills.keys()
        assert all(f["properties"]["status"] == "exercise" for f in drills.values())

    # Hours later (in event time) other events move the clock: the fire decays (half-life 2 h),
    # first to yellow (4 x 2^-1.5 = 1.4), then out of the picture (4 x 2^-7 = 0.03).
    later = t0 + timedelta(hours=3)
    run(settings, [event(elsewhere, later, reporter="gus", severity="Minor")])
    decayed = risk_row(settings, "actual", cell)
    assert decayed is not None and decayed["level"] == "yellow"
    assert decayed["score"] == pytest.approx(4 * 0.5 ** (177 / 120))
    assert decayed["level_since"] == decayed["as_of"] == later
    assert risk_row(settings, "exercise", cell) == played  # another picture, another clock
    run(settings, [event(elsewhere, t0 + timedelta(hours=14), reporter="gus", severity="Minor")])
    assert risk_row(settings, "actual", cell) is None
    assert risk_row(settings, "exercise", cell) == played


def test_a_cancelled_report_takes_its_risk_away(
    settings: Settings, sf_communities: list[str], places: dict[str, list[TrueIncident]]
) -> None:
    t0 = start_of_test()
    picture_at(settings, t0)
    place = places[CANCELLED][0]
    alarm = event(place, t0, reporter="hal", severity="Extreme")  # alone: 8 x 0.5 = 4, orange
    run(settings, [alarm])
    cell = cell_of(settings, alarm)
    raised = risk_row(settings, "actual", cell)
    assert raised is not None and raised["level"] == "orange"
    # within the minute: the cell is not due for decay, only the cancel can bring it down
    withdrawn = event(
        place, t0 + timedelta(seconds=30), reporter="hal", kind="cancel", refs=(alarm["event_id"],)
    )
    run(settings, [withdrawn])
    assert risk_row(settings, "actual", cell) is None  # its only incident is gone


# --- who sees which cells -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reach_world(
    settings: Settings, sf_communities: list[str], places: dict[str, list[TrueIncident]]
) -> dict[str, str]:
    """Corroborated fires: in OWN, in NEIGHBOUR within 1.5 km of OWN, in FAR (> 3 km), and a
    drill in OWN and one in NEIGHBOUR; returns name -> grid cell."""
    t0 = start_of_test()
    picture_at(settings, t0)
    near = [p for p in places[NEIGHBOUR] if 300 < metres_from(OWN, p) < 1500]
    spots = {
        "own": places[OWN][0],
        "neighbour": near[0],
        "far": places[FAR][0],
        "own drill": places[OWN][-1],
        "neighbour drill": near[-1],
    }
    assert metres_from(OWN, spots["far"]) > 3000
    docs: dict[str, list[dict[str, Any]]] = {}
    for i, (name, place) in enumerate(spots.items()):
        status = "exercise" if "drill" in name else "actual"
        when = t0 + timedelta(minutes=i)
        docs[name] = [
            event(place, when, reporter=f"{name}-1", status=status),
            event(place, when, reporter=f"{name}-2", status=status),
        ]
    run(settings, [d for pair in docs.values() for d in pair])
    cells = {name: cell_of(settings, pair[0]) for name, pair in docs.items()}
    assert len({(("drill" in n), c) for n, c in cells.items()}) == len(cells)
    return cells


@pytest.fixture(scope="module")
def callers(settings: Settings) -> Iterator[dict[str, TestClient]]:
    app = create_app(settings)
    with ExitStack() as stack:
        yield {
            "analyst": stack.enter_context(signed_in(app, settings, "analyst")),
            "own": stack.enter_context(signed_in(app, settings, "community", community_id=OWN)),
            "far department": stack.enter_context(
                signed_in(app, settings, "department", jurisdiction=area(FAR))
            ),
            "no scope": stack.enter_context(
                signed_in(app, settings, "community", community_id=OWN, scopes=["incidents:read"])
            ),
        }


def test_a_community_sees_its_own_cells_and_its_neighbours_real_risk(
    settings: Settings, reach_world: dict[str, str], callers: dict[str, TestClient]
) -> None:
    cells = reach_world
    everything = features(callers["analyst"], limit="1000")
    assert {cells["own"], cells["neighbour"], cells["far"]} <= everything.keys()
    drills = features(callers["analyst"], status="exercise", limit="1000")
    assert {cells["own drill"], cells["neighbour drill"]} <= drills.keys()

    own = features(callers["own"], limit="1000")
    assert {cells["own"], cells["neighbour"]} <= own.keys()
    assert cells["far"] not in own
    assert own[cells["own"]]["properties"]["community_id"] == OWN
    assert own[cells["neighbour"]]["properties"]["community_id"] == NEIGHBOUR
    own_drills = features(callers["own"], status="exercise", limit="1000")
    assert cells["own drill"] in own_drills  # its own drill, never its neighbour's
    assert cells["neighbour drill"] not in own_drills
    # the filters: a community, a box, paging by 1 gives the same cells as one page
    mine = features(callers["analyst"], community=OWN, limit="1000")
    assert cells["own"] in mine and cells["neighbour"] not in mine
    fire = everything[cells["far"]]
    lons, lats = zip(*fire["geometry"]["coordinates"][0][0], strict=True)
    box = f"{min(lons)},{min(lats)},{max(lons)},{max(lats)}"
    boxed = features(callers["analyst"], bbox=box, limit="1000")
    assert cells["far"] in boxed and cells["own"] not in boxed
    assert features(callers["own"], limit="1").keys() == own.keys()
    department = features(callers["far department"], limit="1000")
    assert cells["far"] in department and cells["own"] not in department


def test_blue_cells_only_when_asked_and_bad_parameters_are_problems(
    settings: Settings, reach_world: dict[str, str], callers: dict[str, TestClient]
) -> None:
    analyst = callers["analyst"]
    with connect(settings, autocommit=True) as conn:
        # A cell faded to blue but still holding a score (fusion keeps those rows).
        conn.execute(
            "UPDATE risk_cell SET level = 'blue', score = 0.5 WHERE status = 'actual'"
            " AND grid_cell = %s",
            (reach_world["far"],),
        )
    assert reach_world["far"] not in features(analyst, limit="1000")
    blue = features(analyst, min_level="blue", limit="1000")
    assert blue[reach_world["far"]]["properties"]["level"] == "blue"
    assert reach_world["own"] not in features(analyst, min_level="red", limit="1000")
    for params in (
        {"bbox": "1,2,3"},
        {"min_level": "purple"},
        {"status": "Actual"},
        {"cursor": "not-a-cursor"},
        {"limit": "0"},
        {"community": "\x00"},
    ):
        r = analyst.get("/v1/risk", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.headers["content-type"] == PROBLEM
    r = callers["no scope"].get("/v1/risk")
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


def test_a_community_is_listed_what_row_level_security_shows_it(
    settings: Settings, reach_world: dict[str, str], callers: dict[str, TestClient]
) -> None:
    """The API's explicit predicate and the policy of migration 0006 agree: the community's
    cells read as the API role through row-level security alone are the ones the API lists."""
    listed = set(features(callers["own"], min_level="blue", limit="1000"))
    with connect(settings) as conn:
        zone = conn.execute(
            "SELECT ST_AsBinary(geometry(ST_Buffer(geography(geom), %s)))"
            " FROM community WHERE id = %s",
            (settings.neighbour_distance_m, OWN),
        ).fetchone()
    assert zone is not None
    with connect(settings) as conn:
        conn.execute("SET ROLE hub_api")
        conn.execute(
            "SELECT set_config('hub.principal_kind', 'community', true),"
            " set_config('hub.community_id', %s, true),"
            " set_config('hub.neighbour_zone', %s, true)",
            (OWN, bytes(zone[0]).hex()),
        )
        seen = {
            r[0] for r in conn.execute("SELECT grid_cell FROM risk_cell WHERE status = 'actual'")
        }
    assert listed == seen
