"""Sensor warnings through the real pipeline (broker, fusion, PostGIS) and ``GET /v1/warnings``:
a crossing raises one warning that corroborates people's flood report, hysteresis across
batches, a per-community override, neighbours flagged within 2 km (and what their principals
see), drills apart, malformed readings skipped while the worker goes on.

Places are real SF street corners and neighbourhoods (data/sf); the gauge readings are
synthetic (no public real-time street-flood gauge data for these places exists): water depth in
metres above the gauge's normal level, against the shipped limits 0.15 / 0.30 / 0.60 m with a
0.05 m band (config/thresholds.toml).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import shapely
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from pyproj import Transformer

from hub.api.factory import create_app
from hub.fusion.stages import Batch
from hub.fusion.thresholds import SHIPPED, warning_id
from hub.fusion.warnings import WarningFlagStage
from hub.settings import Settings
from hub.store.db import connect
from tests.auth_helpers import signed_in
from tests.fusion_helpers import GENEROUS_LIMITS, fusion_stats, own_stream
from tests.test_incidents import _polygons, incidents_of, run

T = datetime.fromisoformat("2034-03-01T08:00:00-08:00")  # my own time window: one day a scenario
SINCE = "2034-03-01T00:00:00Z"
PROBLEM = "application/problem+json"
UTM_10N = Transformer.from_crs(4326, 32610, always_xy=True)
POLYS = _polygons()

# Real places (WGS84 lon, lat)
FOLSOM_17TH = (-122.4148, 37.7634)  # Mission: 17th & Folsom, a known flooding spot
FOLSOM_17TH_N = (-122.4148, 37.7647)  # ~150 m north: where a resident reports the flood
MISSION_24TH = (-122.4184, 37.7522)
MISSION_16TH = (-122.4196, 37.7650)
HARRISON_20TH = (-122.4127, 37.7590)
FOLSOM_22ND = (-122.4141, 37.7555)
ISLAIS_CREEK = (-122.3883, 37.7480)  # Bayview Hunters Point: Islais Creek at 3rd St
LAKE_MERCED = (-122.50634, 37.72437)  # Lakeshore, ~980 m from Sunset/Parkside, > 2.7 km from others
NEAR, FAR = "Sunset/Parkside", "Excelsior"
OVERRIDE = "Bayview Hunters Point"
EDGE_M = (1950.0, 2050.0)  # distances this close to the 2 km limit are not asserted either way


def _metric(geom: Any) -> Any:
    return shapely.transform(geom, lambda x, y: UTM_10N.transform(x, y), interleaved=False)


MISSING = object()  # a reading without its value


def observation(
    point: tuple[float, float],
    community: str,
    sensor: str,
    day: int,
    minutes: float,
    value: Any,
    **fields: Any,
) -> dict[str, Any]:
    props = {"sensor_id": sensor, "value": value, "unit": "m"}
    props.update(fields.pop("properties", {}))
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "community_id": community,
        "source": {"system": "sf-gauges", "connector": "mqtt"},
        "kind": "observation",
        "category": "Met",
        "certainty": "Observed",
        "event_type": "water_level",
        "observed_at": (T + timedelta(days=day, minutes=minutes)).isoformat(),
        "geometry": {"type": "Point", "coordinates": list(point)},
        "properties": {k: v for k, v in props.items() if v is not MISSING},
    }
    doc.update(fields)
    return doc


def flood_report(
    point: tuple[float, float], community: str, day: int, minutes: float
) -> dict[str, Any]:
    """A resident's report of a flood: an incident, no reading."""
    source = {"system": "community-app", "connector": "webhook", "reporter": "resident-1"}
    doc = observation(point, community, "", day, minutes, MISSING, source=source)
    return doc | {
        "kind": "incident",
        "event_type": "flood",
        "severity": "Moderate",
        "properties": {},
    }


@dataclass
class World:
    settings: Settings
    tag: str
    docs: dict[str, dict[str, Any]]  # name -> event

    def sensor(self, name: str) -> str:
        return f"sf-gauges/{name}-{self.tag}"

    def alerts(self, name: str) -> list[dict[str, Any]]:
        with connect(self.settings) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT * FROM event WHERE source_connector = 'hub-thresholds'"
                " AND properties->>'sensor' = %s ORDER BY observed_at",
                (self.sensor(name),),
            ).fetchall()

    def incident(self, event_id: Any) -> dict[str, Any]:
        return incidents_of(self.settings, [{"event_id": str(event_id)}])[str(event_id)]


@pytest.fixture(scope="module")
def world(
    base_settings: Settings, sf_communities: list[str], tmp_path_factory: pytest.TempPathFactory
) -> World:
    tag = uuid.uuid4().hex[:8]
    thresholds = tmp_path_factory.mktemp("thresholds") / "thresholds.toml"
    # Bayview's low streets flood earlier: a lower water level already warns there.
    thresholds.write_text(
        SHIPPED.read_text()
        + f'\n[communities."{OVERRIDE}".types.water_level]\nyellow = 0.10\norange = 0.20\n'
        + "red = 0.45\n"
    )
    settings = own_stream(base_settings, "warnings", thresholds=thresholds, **GENEROUS_LIMITS)

    def obs(
        name: str,
        key: str,
        point: tuple[float, float],
        community: str,
        day: int,
        minutes: float,
        value: Any,
        **kw: Any,
    ) -> tuple[str, dict[str, Any]]:
        return name, observation(point, community, f"{key}-{tag}", day, minutes, value, **kw)

    first = dict(
        [
            # day 0: a crossing next to a resident's flood report; a plain report elsewhere
            obs("f1", "folsom", FOLSOM_17TH, "Mission", 0, 0, 0.04),
            obs("f2", "folsom", FOLSOM_17TH, "Mission", 0, 10, 0.18),
            obs("f3", "folsom", FOLSOM_17TH, "Mission", 0, 20, 0.22),
            obs("f4", "folsom", FOLSOM_17TH, "Mission", 0, 30, 0.17),
            ("resident", flood_report(FOLSOM_17TH_N, "Mission", 0, 25)),
            ("plain", flood_report(POLYS[FAR].representative_point().coords[0], FAR, 0, 25)),
            # day 1: a gauge bobbing around the yellow limit, within its band
            *(
                obs(f"h{i}", "mission24", MISSION_24TH, "Mission", 1, 10 * i, v)
                for i, v in enumerate([0.05, 0.16, 0.12, 0.17, 0.11, 0.16])
            ),
            # day 2: the same reading in Bayview (override) and in the Mission (default)
            obs("bayview", "islais", ISLAIS_CREEK, OVERRIDE, 2, 0, 0.12),
            obs("control", "folsom22", FOLSOM_22ND, "Mission", 2, 0, 0.12),
            # day 3: Lake Merced rises to red, ~1 km from Sunset/Parkside
            obs("n1", "merced", LAKE_MERCED, "Lakeshore", 3, 0, 0.05),
            obs("n2", "merced", LAKE_MERCED, "Lakeshore", 3, 10, 0.70),
            # day 4: a drill
            obs("drill", "mission16", MISSION_16TH, "Mission", 4, 0, 0.70, status="exercise"),
            # day 5: malformed readings, then a good one of the same gauge
            obs("bad_text", "harrison", HARRISON_20TH, "Mission", 5, 0, "high"),
            obs("bad_none", "harrison", HARRISON_20TH, "Mission", 5, 5, MISSING),
            obs(
                "bad_unit",
                "harrison",
                HARRISON_20TH,
                "Mission",
                5,
                10,
                0.5,
                properties={"unit": "ft"},
            ),
            obs("bad_obj", "harrison", HARRISON_20TH, "Mission", 5, 12, {"m": 0.5}),
            obs("m1", "harrison", HARRISON_20TH, "Mission", 5, 15, 0.20),
        ]
    )
    run(settings, list(first.values()))
    # A second batch (a new worker): the sensors' levels come from sensor_state.
    second = dict(
        [
            obs("h_late", "mission24", MISSION_24TH, "Mission", 1, 5, 0.90),  # older: ignored
            obs("h6", "mission24", MISSION_24TH, "Mission", 1, 60, 0.17),  # still yellow
            obs("h7", "mission24", MISSION_24TH, "Mission", 1, 70, 0.08),  # beyond the band
            obs("h8", "mission24", MISSION_24TH, "Mission", 1, 80, 0.16),  # a new warning
            obs("h9", "mission24", MISSION_24TH, "Mission", 1, 90, 0.35),  # escalation
            obs("m2", "harrison", HARRISON_20TH, "Mission", 5, 30, 0.70),
        ]
    )
    run(settings, list(second.values()))
    return World(settings, tag, first | second)


def _ids(world: World, *names: str) -> list[str]:
    return [world.docs[n]["event_id"] for n in names]


# --- fusion -----------------------------------------------------------------------------------


def test_crossing_raises_one_warning_that_corroborates_a_flood_report(world: World) -> None:
    (alert,) = world.alerts("folsom")
    f2 = world.docs["f2"]
    assert alert["event_id"] == warning_id(uuid.UUID(f2["event_id"]), "yellow")
    assert (alert["kind"], alert["event_type"], alert["status"]) == ("alert", "flood", "actual")
    assert (alert["severity"], alert["urgency"], alert["certainty"]) == (
        "Moderate",
        "Immediate",
        "Observed",
    )
    assert alert["properties"] == {
        "level": "yellow",
        "value": 0.18,
        "limit": 0.15,
        "unit": "m",
        "sensor": world.sensor("folsom"),
        "observation_id": f2["event_id"],
        "threshold_source": f"{world.settings.thresholds}#types.water_level",
    }
    with connect(world.settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        source = cur.execute(
            "SELECT * FROM event WHERE event_id = %s", (f2["event_id"],)
        ).fetchone()
    assert source is not None
    same: tuple[str, ...] = (
        "community_id",
        "category",
        "observed_at",
        "geom",
        "grid_cell",
        "source_system",
    )
    same += ("reporter", "sent_at", "kafka_partition", "kafka_offset")
    assert {k: alert[k] for k in same} == {k: source[k] for k in same}

    incident = world.incident(alert["event_id"])
    assert incident["id"] == world.incident(world.docs["resident"]["event_id"])["id"]
    assert incident["verification"] == "corroborated" and incident["sources"] == 2
    assert incident["reports"] == 2 and incident["warning"] and incident["event_type"] == "flood"
    plain = world.incident(world.docs["plain"]["event_id"])
    assert not plain["warning"] and plain["neighbours"] == []


def test_hysteresis_within_the_band_and_across_batches(world: World) -> None:
    alerts = world.alerts("mission24")
    assert [(a["properties"]["observation_id"], a["properties"]["level"]) for a in alerts] == [
        (world.docs["h1"]["event_id"], "yellow"),  # crossed; h2..h6 stay in yellow's band
        (world.docs["h8"]["event_id"], "yellow"),  # h7 fell beyond the band: a new episode
        (world.docs["h9"]["event_id"], "orange"),
    ]
    assert alerts[0]["refs"] == [] and alerts[1]["refs"] == []
    assert alerts[2]["refs"] == [alerts[1]["event_id"]]  # the escalation updates its episode
    assert alerts[2]["severity"] == "Severe"
    with connect(world.settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        state = cur.execute(
            "SELECT * FROM sensor_state WHERE sensor = %s", (world.sensor("mission24"),)
        ).fetchone()
    assert state is not None
    assert (state["level"], state["value"], state["status"]) == ("orange", 0.35, "actual")
    assert str(state["event_id"]) == world.docs["h9"]["event_id"]  # the late h_late changed nothing
    assert state["warning_event_id"] == alerts[2]["event_id"]


def test_per_community_override_applies(world: World) -> None:
    (alert,) = world.alerts("islais")
    assert alert["properties"]["limit"] == 0.10 and alert["properties"]["level"] == "yellow"
    assert alert["properties"]["threshold_source"] == (
        f'{world.settings.thresholds}#communities."{OVERRIDE}".types.water_level'
    )
    assert world.alerts("folsom22") == []  # the same 0.12 m under the default limits


def test_warning_near_a_border_is_flagged_to_that_neighbour_only(world: World) -> None:
    (alert,) = world.alerts("merced")
    assert alert["properties"]["level"] == "red" and alert["severity"] == "Extreme"
    incident = world.incident(alert["event_id"])
    assert incident["warning"] and incident["communities"] == ["Lakeshore"]
    assert NEAR in incident["neighbours"] and FAR not in incident["neighbours"]


def test_neighbours_are_the_communities_within_2_km(world: World) -> None:
    """Every warning of mine, against distances computed here (shapely in UTM metres)."""
    with connect(world.settings) as conn:
        communities: dict[str, str] = dict(
            conn.execute("SELECT id, ST_AsText(geom) FROM community").fetchall()
        )
        warnings = conn.execute(
            "SELECT id, communities, neighbours, ST_AsText(geom) FROM incident"
            " WHERE warning AND first_observed_at >= %s",
            (SINCE,),
        ).fetchall()
    areas = {cid: _metric(shapely.from_wkt(wkt)) for cid, wkt in communities.items()}
    assert len(warnings) >= 6
    for _, own, neighbours, wkt in warnings:
        geom = _metric(shapely.from_wkt(wkt))
        distance = {c: a.distance(geom) for c, a in areas.items() if c not in own}
        assert neighbours == sorted(neighbours)
        assert {c for c, d in distance.items() if d < EDGE_M[0]} <= set(neighbours)
        assert not {c for c, d in distance.items() if d > EDGE_M[1]} & set(neighbours)


def test_exercise_readings_raise_exercise_warnings(world: World) -> None:
    (alert,) = world.alerts("mission16")
    assert alert["status"] == "exercise" and alert["properties"]["level"] == "red"
    incident = world.incident(alert["event_id"])
    assert incident["status"] == "exercise" and incident["warning"]


def test_malformed_readings_are_skipped_and_the_worker_goes_on(world: World) -> None:
    bad = _ids(world, "bad_text", "bad_none", "bad_unit", "bad_obj")
    with connect(world.settings) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM event WHERE event_id = ANY(%s::uuid[])", (bad,)
        ).fetchone()
    assert stored == (4,)  # valid events, stored: only the thresholds leave them out
    alerts = world.alerts("harrison")
    assert [a["properties"]["observation_id"] for a in alerts] == _ids(world, "m1", "m2")
    assert [a["properties"]["level"] for a in alerts] == ["yellow", "red"]
    stats = fusion_stats(world.settings)
    assert stats["dlq"] == 0 and stats["consumed"] == len(world.docs)


def test_flags_change_only_what_changed(world: World) -> None:
    (alert,) = world.alerts("merced")
    incident = world.incident(alert["event_id"])
    stage = WarningFlagStage(world.settings.neighbour_distance_m)
    with connect(world.settings) as conn, conn.transaction(force_rollback=True):
        assert (
            stage.apply(conn, Batch(changed_incidents={str(incident["id"])})) == 0
        )  # already right: untouched
        seq = conn.execute("SELECT updated_seq FROM incident WHERE id = %s", (incident["id"],))
        assert seq.fetchone() == (incident["updated_seq"],)
        conn.execute(
            "UPDATE incident SET warning = false, neighbours = '{}' WHERE id = %s",
            (incident["id"],),
        )
        assert stage.apply(conn, Batch(changed_incidents={str(incident["id"])})) == 1
        row = conn.execute(
            "SELECT warning, neighbours, updated_seq FROM incident WHERE id = %s",
            (incident["id"],),
        ).fetchone()
        assert row is not None and row[:2] == (True, incident["neighbours"])
        assert row[2] > incident["updated_seq"]


# --- GET /v1/warnings -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def callers(world: World) -> Iterator[dict[str, TestClient]]:
    app = create_app(world.settings)
    specs = {"admin": {}, NEAR: {"community_id": NEAR}, FAR: {"community_id": FAR}}
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                signed_in(app, world.settings, "community" if kw else "admin", **kw)
            )
            for name, kw in specs.items()
        }


def _walk(http: TestClient, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every feature of the collection, following next links."""
    features: list[dict[str, Any]] = []
    r = http.get("/v1/warnings", params=params)
    while True:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/geo+json"
        body = r.json()
        assert body["numberReturned"] == len(body["features"])
        features += body["features"]
        nxt = [x["href"] for x in body["links"] if x["rel"] == "next"]
        if not nxt:
            return features
        kept = {k: v[0] for k, v in parse_qs(urlsplit(nxt[0]).query).items() if k != "cursor"}
        assert kept == params, "filters kept"
        r = http.get(nxt[0])


def _by_id(features: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f["properties"] for f in features}


def _sql_warnings(world: World, status: str = "actual") -> set[str]:
    with connect(world.settings) as conn:
        rows = conn.execute(
            "SELECT id::text FROM incident WHERE warning AND state = 'open' AND status = %s"
            " AND last_observed_at >= %s",
            (status, SINCE),
        ).fetchall()
    return {r[0] for r in rows}


def test_admin_lists_the_open_warnings_with_their_level(
    world: World, callers: dict[str, TestClient]
) -> None:
    http = callers["admin"]
    whole = _by_id(_walk(http, {"since": SINCE}))
    paged = _by_id(_walk(http, {"since": SINCE, "limit": "2"}))
    assert whole == paged and set(whole) == _sql_warnings(world)
    flood = str(world.incident(world.alerts("folsom")[0]["event_id"])["id"])
    merced = str(world.incident(world.alerts("merced")[0]["event_id"])["id"])
    drill = str(world.incident(world.alerts("mission16")[0]["event_id"])["id"])
    plain = str(world.incident(world.docs["plain"]["event_id"])["id"])
    assert flood in whole and merced in whole
    assert drill not in whole and plain not in whole
    assert whole[flood]["level"] == "yellow" and whole[flood]["verification"] == "corroborated"
    assert whole[merced]["level"] == "red" and whole[merced]["severity"] == "Extreme"
    assert NEAR in whole[merced]["neighbours"] and not whole[merced]["flagged_to_caller"]
    assert whole[merced]["communities"] == ["Lakeshore"]
    drills = _by_id(_walk(http, {"since": SINCE, "status": "exercise"}))
    assert set(drills) == _sql_warnings(world, "exercise") and drills[drill]["level"] == "red"
    # community: warnings in it or flagged to it
    assert merced in _by_id(_walk(http, {"since": SINCE, "community": NEAR}))
    assert merced in _by_id(_walk(http, {"since": SINCE, "community": "Lakeshore"}))
    assert merced not in _by_id(_walk(http, {"since": SINCE, "community": FAR}))
    lon, lat = LAKE_MERCED
    box = f"{lon - 0.002},{lat - 0.002},{lon + 0.002},{lat + 0.002}"
    assert set(_by_id(_walk(http, {"since": SINCE, "bbox": box}))) == {merced}


def test_the_flagged_neighbour_sees_it_a_far_community_does_not(
    world: World, callers: dict[str, TestClient]
) -> None:
    merced = str(world.incident(world.alerts("merced")[0]["event_id"])["id"])
    near = _by_id(_walk(callers[NEAR], {"since": SINCE}))
    assert near[merced]["flagged_to_caller"] and near[merced]["level"] == "red"
    assert all(p["flagged_to_caller"] == (NEAR in p["neighbours"]) for p in near.values())
    far = _by_id(_walk(callers[FAR], {"since": SINCE}))
    assert merced not in far
    assert all(p["flagged_to_caller"] == (FAR in p["neighbours"]) for p in far.values())


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "???"}, "cursor"),
        ({"status": "rumour"}, "status"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_bad_parameters_are_problems(
    callers: dict[str, TestClient], params: dict[str, str], detail: str
) -> None:
    r = callers["admin"].get("/v1/warnings", params=params)
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert detail in r.text


def test_warnings_need_a_token(world: World) -> None:
    with TestClient(create_app(world.settings)) as http:
        r = http.get("/v1/warnings")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM


def test_thresholds_setting_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HUB_THRESHOLDS", str(tmp_path / "t.toml"))
    assert Settings().thresholds == tmp_path / "t.toml"
