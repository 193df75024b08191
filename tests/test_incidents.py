"""Incidents through the real pipeline (broker, fusion, PostGIS): cross-boundary correlation,
no false merge, same-source repeats, updates and cancellations by refs, drills apart.

Places are real: a real SFPD incident on the border of two SF neighbourhoods, reports put a few
tens of metres either side of the border (shapely decides the sides)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from psycopg.rows import dict_row
from pyproj import Geod
from shapely.geometry import Point, shape

from hub.bench.fusion_quality import generate, true_incidents
from hub.fusion.incident.ids import source_key
from hub.fusion.incident.model import Report, distance_m, seed_id
from hub.fusion.incident.reference import cluster
from hub.fusion.rules import Rules
from hub.settings import Settings
from hub.store.db import connect
from hub.store.frames import copy_frame
from hub.store.stats import orphan_reports
from tests.conftest import DATA
from tests.fusion_helpers import fusion_stats, produce, running_worker, start_fusion, wait_until

GEOD = Geod(ellps="WGS84")
WEST, EAST = "Western Addition", "Tenderloin"  # neighbours with a long common border
T0 = datetime.fromisoformat("2018-12-05T21:40:00-08:00")
_DAYS = itertools.count()


@pytest.fixture(autouse=True)
def own_day() -> None:
    """Each test on a day of its own: the database (and so the incidents) are shared."""
    global DAY
    DAY = next(_DAYS) * 3


DAY = 0


def _polygons() -> dict[str, Any]:
    doc = json.loads((DATA / "sf_analysis_neighborhoods.geojson").read_text())
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


@pytest.fixture(scope="module")
def border() -> tuple[tuple[float, float], tuple[float, float]]:
    """Two points 80 m apart, one in each community, across their common border."""
    polys = _polygons()
    line = polys[WEST].boundary.intersection(polys[EAST].boundary)
    mid = line.interpolate(0.5, normalized=True)
    for azimuth in range(0, 360, 10):
        a = GEOD.fwd(mid.x, mid.y, azimuth, 40)[:2]
        b = GEOD.fwd(mid.x, mid.y, azimuth + 180, 40)[:2]
        if polys[WEST].contains(Point(a)) and polys[EAST].contains(Point(b)):
            return a, b
    raise AssertionError("no crossing found")


def report(
    point: tuple[float, float],
    community: str,
    *,
    event_type: str = "fire",
    minutes: float = 0,
    system: str = "community-app",
    reporter: str | None = "r1",
    kind: str = "incident",
    refs: tuple[str, ...] = (),
    status: str = "actual",
    severity: str = "Severe",
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "community_id": community,
        "source": {"system": system, "connector": "test", "reporter": reporter},
        "kind": kind,
        "category": "Fire",
        "severity": severity,
        "certainty": "Observed",
        "status": status,
        "event_type": event_type,
        "observed_at": (T0 + timedelta(days=DAY, minutes=minutes)).isoformat(),
        "geometry": {"type": "Point", "coordinates": list(point)},
        "refs": list(refs),
    }
    if reporter is None:
        del doc["source"]["reporter"]
    return doc


def run(settings: Settings, docs: list[dict[str, Any]]) -> None:
    settings = settings.model_copy(update={"fusion_incidents": True})
    before = fusion_stats(settings)["consumed"]
    produce(settings, [(b"k", orjson.dumps(d)) for d in docs])
    with running_worker(settings):
        wait_until(lambda: fusion_stats(settings)["consumed"] == before + len(docs), 60, "consumed")


def incidents_of(settings: Settings, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """event_id -> its incident row (with ``id`` and the live members)."""
    ids = [d["event_id"] for d in docs]
    with connect(settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT r.event_id::text AS event_id, r.cancelled, i.* FROM incident_report r"
            " JOIN incident i ON i.id = r.incident_id WHERE r.event_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return {r["event_id"]: r for r in rows}


def test_cross_boundary_fire_is_one_corroborated_incident(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    west, east = border
    a = report(west, WEST, reporter="alice")
    b = report(east, EAST, reporter="bob", minutes=4)
    run(hub_settings, [a, b])
    found = incidents_of(hub_settings, [a, b])
    assert found[a["event_id"]]["id"] == found[b["event_id"]]["id"]
    incident = found[a["event_id"]]
    assert incident["verification"] == "corroborated" and incident["sources"] == 2
    assert sorted(incident["communities"]) == sorted([WEST, EAST])
    assert incident["reports"] == 2 and incident["state"] == "open"


def test_no_false_merge_and_same_source_does_not_corroborate(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    west, _ = border
    far = GEOD.fwd(west[0], west[1], 90, 2000)[:2]  # 2 km east
    a = report(west, WEST, reporter="carol")
    again = report(west, WEST, reporter="carol", minutes=2)  # the same person twice
    system_1 = report(west, WEST, reporter=None, system="alarm-net", minutes=1)
    system_2 = report(west, WEST, reporter=None, system="alarm-net", minutes=3)
    other = report(far, EAST, reporter="dave")
    medical = report(west, WEST, reporter="erin", event_type="medical")
    docs = [a, again, other, medical]
    run(hub_settings, docs)
    found = incidents_of(hub_settings, docs)
    assert found[a["event_id"]]["id"] == found[again["event_id"]]["id"]
    assert found[a["event_id"]]["verification"] == "reported"  # one person, twice
    assert found[other["event_id"]]["id"] != found[a["event_id"]]["id"]
    assert found[medical["event_id"]]["id"] != found[a["event_id"]]["id"]
    run(hub_settings, [system_1, system_2])
    found = incidents_of(hub_settings, [a, system_1, system_2])
    assert found[system_1["event_id"]]["id"] == found[a["event_id"]]["id"]
    assert found[a["event_id"]]["sources"] == 2  # carol, and the alarm network once


def test_update_and_cancel_by_refs(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    west, east = border
    first = report(west, WEST, reporter="frank")
    bridge = report(east, EAST, reporter="gina", minutes=5)
    azimuth = GEOD.inv(west[0], west[1], east[0], east[1])[0]
    # on from the bridge: 250 m from it, 330 m from first (fire links within 300 m): linked to
    # the bridge, but an incident does not chain: it is beyond the reach of first, the seed
    far_east = GEOD.fwd(east[0], east[1], azimuth, 250)[:2]
    third = report(far_east, EAST, reporter="hank", minutes=6)
    run(hub_settings, [first, bridge, third])
    found = incidents_of(hub_settings, [first, bridge, third])
    assert found[first["event_id"]]["id"] == found[bridge["event_id"]]["id"]
    assert found[third["event_id"]]["id"] != found[first["event_id"]]["id"]
    # An update far away (a corrected position) still joins the report it refs.
    moved = GEOD.fwd(west[0], west[1], 0, 3000)[:2]
    update = report(moved, WEST, reporter="frank", minutes=30, refs=(first["event_id"],))
    run(hub_settings, [update])
    found = incidents_of(hub_settings, [first, update])
    assert found[update["event_id"]]["id"] == found[first["event_id"]]["id"]
    # Cancelling the bridge: first keeps its update, third stays alone.
    cancel = report(
        east, EAST, reporter="gina", minutes=40, kind="cancel", refs=(bridge["event_id"],)
    )
    run(hub_settings, [cancel])
    found = incidents_of(hub_settings, [first, bridge, third, update])
    assert found[bridge["event_id"]]["cancelled"]
    assert found[first["event_id"]]["id"] != found[third["event_id"]]["id"]
    assert found[first["event_id"]]["id"] == found[update["event_id"]]["id"]
    assert found[third["event_id"]]["reports"] == 1
    assert found[first["event_id"]]["reports"] == 2


def test_a_cancel_in_the_batch_of_its_report(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    """The picture does not depend on where batches are cut: a cancel that arrives together
    with the report it cancels withdraws it, as one in a later batch does."""
    west, _ = border
    kept = report(west, WEST, reporter="ivan")
    gone = report(west, WEST, reporter="judy", minutes=3)
    cancel = report(west, WEST, reporter="judy", minutes=9, kind="cancel", refs=(gone["event_id"],))
    run(hub_settings, [kept, gone, cancel])
    found = incidents_of(hub_settings, [kept, gone])
    assert found[gone["event_id"]]["cancelled"] and not found[kept["event_id"]]["cancelled"]
    incident = found[kept["event_id"]]
    assert incident["reports"] == 1 and incident["sources"] == 1
    assert incident["verification"] == "reported"  # judy's withdrawn word corroborates nothing


def test_a_cancel_sent_before_its_report(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    """Out of order: the cancel arrives a batch before the report it cancels, which then
    arrives already withdrawn (the picture is a function of the set of reports)."""
    _, east = border
    kept = report(east, EAST, reporter="kim")
    gone = report(east, EAST, reporter="lee", minutes=2)
    cancel = report(east, EAST, reporter="lee", minutes=8, kind="cancel", refs=(gone["event_id"],))
    run(hub_settings, [cancel])
    run(hub_settings, [kept, gone])
    found = incidents_of(hub_settings, [kept, gone])
    assert found[gone["event_id"]]["cancelled"] and not found[kept["event_id"]]["cancelled"]
    assert found[kept["event_id"]]["reports"] == 1
    assert found[kept["event_id"]]["verification"] == "reported"
    with connect(hub_settings) as conn:  # nothing left waiting
        waiting = conn.execute(
            "SELECT count(*) FROM pending_cancel WHERE ref = %s", (gone["event_id"],)
        ).fetchone()
    assert waiting == (0,)


def test_drills_never_touch_real_incidents(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    west, east = border
    real = report(west, WEST, reporter="ivy")
    drill = report(east, EAST, reporter="jack", status="exercise", minutes=1)
    run(hub_settings, [real, drill])
    found = incidents_of(hub_settings, [real, drill])
    assert found[real["event_id"]]["id"] != found[drill["event_id"]]["id"]
    assert found[real["event_id"]]["status"] == "actual"
    assert found[drill["event_id"]]["status"] == "exercise"
    assert found[real["event_id"]]["verification"] == "reported"


# --- crash equivalence ------------------------------------------------------------------------


def _as_test_picture(event: bytes) -> dict[str, Any]:
    # status "test": a picture of its own, so the shared database's other events never join
    return {**orjson.loads(event), "status": "test"}


def _reference(docs: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """What a clean run gives: correlation of all reports at once (order-independent)."""
    return {str(k): v for k, v in cluster(_reports(docs), Rules.load()).items()}


def _reports(docs: list[dict[str, Any]]) -> list[Report]:
    return [
        Report(
            event_id=uuid.UUID(d["event_id"]),
            event_type=d["event_type"],
            status=d["status"],
            observed_at=datetime.fromisoformat(d["observed_at"]),
            lon=d["geometry"]["coordinates"][0],
            lat=d["geometry"]["coordinates"][1],
            community_id=d.get("community_id"),
            source_key=source_key(
                d["source"].get("reporter"), d["source"]["system"], d.get("community_id")
            ),
            severity=d.get("severity", "Unknown"),
            certainty=d.get("certainty", "Unknown"),
        )
        for d in docs
    ]


def _outside_extent(docs: list[dict[str, Any]], assigned: dict[str, uuid.UUID]) -> list[str]:
    """Members of the pipeline's incidents that lie outside their seed's reach: the pair's
    distance and window (none of these reports refs another)."""
    rules = Rules.load()
    reports = {str(r.event_id): r for r in _reports(docs)}
    seeds = {seed_id(r): r for r in reports.values()}
    out = []
    for event_id, incident in assigned.items():
        member, seed = reports[event_id], seeds[incident]
        reach = rules.limits(member.event_type, seed.event_type)
        apart = abs(member.observed_at - seed.observed_at).total_seconds()
        if member is not seed and (
            reach is None
            or distance_m(member, seed) > reach.distance_m
            or apart > reach.window.total_seconds()
        ):
            out.append(event_id)
    return out


def test_incidents_after_a_crash_equal_a_clean_run(
    hub_settings: Settings, sf_communities: list[str], tmp_path: Path
) -> None:
    generated = generate(true_incidents()[:2500])  # real places and times, 1-4 sources each
    docs = [_as_test_picture(g.event) for g in generated]
    produce(hub_settings, [(b"k", orjson.dumps(d)) for d in docs])
    log = tmp_path / "fusion.log"
    settings = hub_settings.model_copy(
        update={"fusion_max_poll_records": 500, "fusion_incidents": True}
    )
    proc = start_fusion(settings, log)
    try:
        half = len(docs) // 2
        wait_until(lambda: fusion_stats(settings)["consumed"] >= half, 120, "half consumed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert fusion_stats(settings)["consumed"] < len(docs), "the kill came too late"
        proc = start_fusion(settings, log)
        wait_until(lambda: fusion_stats(settings)["consumed"] == len(docs), 180, "all")
    finally:
        proc.terminate()
        proc.wait(30)
    found = incidents_of(settings, docs)
    got = {event_id: row["id"] for event_id, row in found.items()}
    expected = _reference(docs)
    assert got == expected
    merged = len(expected) - len(set(expected.values()))
    assert merged > 500, "the workload must exercise correlation"
    # The extent the model promises holds in the pipeline's incidents too.
    assert _outside_extent(docs, got) == []
    with connect(settings) as conn:
        assert orphan_reports(conn) == (0, 0)


def decision(
    incident: uuid.UUID, what: str, point: tuple[float, float], community: str, **props: Any
) -> dict[str, Any]:
    """A ``verification`` event as the API writes it for a principal's decision."""
    doc = report(point, community, kind="verification", reporter="duty-officer-7", minutes=50)
    doc["source"] = {"system": "hub-api", "connector": "verification", "reporter": "officer-7"}
    doc["properties"] = {"decision": what, "incident_id": str(incident), **props}
    return doc


def test_verify_refute_and_a_sticky_split(
    hub_settings: Settings, sf_communities: list[str], border: Any
) -> None:
    west, east = border
    a = report(west, WEST, reporter="kim")
    b = report(east, EAST, reporter="lee", minutes=2)
    rumour = report(GEOD.fwd(west[0], west[1], 0, 5000)[:2], WEST, reporter="moe")
    run(hub_settings, [a, b, rumour])
    found = incidents_of(hub_settings, [a, b, rumour])
    fire, rumoured = found[a["event_id"]]["id"], found[rumour["event_id"]]["id"]
    run(
        hub_settings,
        [
            decision(fire, "verified", west, WEST, reason="crew on scene"),
            decision(rumoured, "refuted", west, WEST, reason="no smoke seen by patrol"),
        ],
    )
    # A decision sent to the topic by anyone but the hub's API (as a connector could) is
    # stored as sent and changes nothing.
    forged = decision(fire, "refuted", west, WEST, reason="forged")
    forged["source"] = {"system": "community-app", "connector": "test", "reporter": "mallory"}
    run(hub_settings, [forged])
    found = incidents_of(hub_settings, [a, rumour])
    assert found[a["event_id"]]["verification"] == "verified"
    assert found[a["event_id"]]["decided_by"] == "officer-7"
    assert found[a["event_id"]]["decision_reason"] == "crew on scene"
    refuted = found[rumour["event_id"]]
    assert refuted["verification"] == "refuted" and refuted["state"] == "open"  # still visible
    # An operator splits b out: it becomes an incident of its own, and stays one even when a
    # new report lies right between the two.
    run(hub_settings, [decision(fire, "split", west, WEST, event_id=b["event_id"])])
    found = incidents_of(hub_settings, [a, b])
    assert found[a["event_id"]]["id"] != found[b["event_id"]]["id"]
    assert found[a["event_id"]]["verification"] == "verified"  # the decision stays with a
    between = report(GEOD.fwd(west[0], west[1], 0, 1)[:2], WEST, reporter="ned", minutes=3)
    run(hub_settings, [between])
    found = incidents_of(hub_settings, [a, b, between])
    assert found[between["event_id"]]["id"] == found[a["event_id"]]["id"]
    assert found[b["event_id"]]["id"] != found[a["event_id"]]["id"]
    assert found[b["event_id"]]["reports"] == 1
    # An update of the split-out report, sent from right next to a, stays with b.
    update = report(west, WEST, reporter="lee", minutes=6, refs=(b["event_id"],))
    run(hub_settings, [update])
    found = incidents_of(hub_settings, [a, b, update])
    assert found[update["event_id"]]["id"] == found[b["event_id"]]["id"]
    assert found[b["event_id"]]["reports"] == 2 and found[a["event_id"]]["reports"] == 2
    with connect(hub_settings) as conn:  # merges, splits and cancels left no member behind
        assert orphan_reports(conn) == (0, 0)


def test_copy_frame_round_trips_awkward_values(hub_settings: Settings) -> None:
    awkward = ['Castro/Upper "Market"', "back\\slash", "tab\there", "line\nbreak", "é,{x}", ""]
    frame = pl.DataFrame(
        {
            "id": [str(uuid.uuid4()), str(uuid.uuid4())],
            "a": [awkward[0], awkward[1]],
            "b": [None, ""],
            "c": [True, False],
            "d": [1.5, -2.0],
            "e": [T0, T0],
            "f": [awkward, []],
        },
        schema_overrides={"e": pl.Datetime("us", "UTC")},
    )
    with connect(hub_settings) as conn, conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE TEMP TABLE t (id uuid, a text, b text, c bool, d float8, e timestamptz,"
            " f text[])"
        )
        with conn.cursor() as cur:
            copy_frame(cur, "COPY t FROM STDIN (FORMAT csv)", frame)
        got = conn.execute("SELECT a, b, c, d, e, f FROM t ORDER BY c DESC").fetchall()
    assert got[0] == (awkward[0], None, True, 1.5, T0, awkward)
    assert got[1] == (awkward[1], "", False, -2.0, T0, [])
