"""`hub demo --once --json` end to end on its own stack and database: the counts add up against
the real CSV, the fused picture (incidents, risk colours, warnings) and the scripted scenario
(a flood across a border, a refuted rumour) come out as the API serves them, the SVG map is
written, a second run stores nothing new and changes nothing, and nothing it started is left
running."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import orjson
import pytest
import shapely
from shapely.geometry import MultiPoint, Point, shape

from hub.demo import scenario
from hub.settings import Settings
from hub.stack.broker import free_port, port_open
from hub.store.migrate import drop_database
from schemas.event import parse_event
from tests.conftest import DATA

pytestmark = pytest.mark.slow


def _expected() -> tuple[int, int, Counter[str]]:
    with (DATA / "sfpd_incident_reports_2018-12.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    located = [r for r in rows if r["Latitude"] and r["Longitude"]]
    return len(rows), len(rows) - len(located), Counter(r["Analysis Neighborhood"] for r in located)


def _run_demo(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--once", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def _demo_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, int], str]:
    """A stack of its own: state dir, free ports, a throw-away database."""
    base = os.environ.get(
        "HUB_TEST_DATABASE_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
    )
    database_url = f"{base}/hub_test_demo_{uuid.uuid4().hex[:8]}"
    ports = {"broker": free_port(), "api": free_port(), "metrics": free_port()}
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_STATE_DIR": str(tmp_path / ".hub"),
        "HUB_BROKER_PORT": str(ports["broker"]),
        "HUB_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['broker']}",
        "HUB_API_PORT": str(ports["api"]),
        "HUB_FUSION_METRICS_PORT": str(ports["metrics"]),
    }
    return env, ports, database_url


def test_demo_once_json_counts_add_up_and_rerun_stores_nothing(tmp_path: Path) -> None:
    env, ports, database_url = _demo_env(tmp_path)
    rows, without_coordinates, per_neighbourhood = _expected()
    try:
        first = _run_demo(env, tmp_path)
        assert first["rows_read"] == rows
        assert first["rejected_by_connector"] == without_coordinates
        assert first["events_produced"] == rows - without_coordinates
        assert first["events_stored"] == first["events_produced"]
        assert first["duplicates_dropped"] == 0 and first["dlq"] == 0
        assert first["per_community"] == dict(per_neighbourhood)
        assert set(first["lag_ms"]) == {"p50", "p95", "p99"}
        assert 0 < first["lag_ms"]["p50"] <= first["lag_ms"]["p99"]
        seen = {c["kind"]: c for c in first["clients"]}
        stored = first["events_stored"]
        assert seen["admin"]["events"] == seen["analyst"]["events"] == stored
        assert seen["analyst"]["with_reporter"] == 0
        # own events and the neighbours' near its boundary; never the whole city
        assert per_neighbourhood["Mission"] < seen["community"]["events"] < stored
        assert 0 < seen["department"]["events"] < stored
        assert all(c["client_id"] in c["curl"] for c in first["clients"])

        second = _run_demo(env, tmp_path)
        assert second["events_produced"] == first["events_produced"]
        assert second["events_stored"] == 0
        assert second["duplicates_dropped"] == second["events_produced"]
        assert second["per_community"] == {}
        _assert_picture(first, tmp_path)
        _assert_scenario(first)
        _assert_rerun_changes_nothing(first, second)
    finally:
        drop_database(Settings(database_url=database_url))
    assert not any(port_open(p) for p in ports.values()), "the demo left a service running"
    assert not list((tmp_path / ".hub" / "run").glob("*.pid"))


SVG = "{http://www.w3.org/2000/svg}"
OUTCOME = (
    "flood_incident",
    "flood_verification",
    "flood_communities",
    "flood_warning_level",
    "flood_warning_neighbours",
    "flood_flagged_neighbour_sees_it",
    "rumour_incident",
    "rumour_verification",
    "rumour_decided_by",
    "rumour_reason",
)


def _neighbourhoods() -> dict[str, Any]:
    doc = orjson.loads((DATA / "sf_analysis_neighborhoods.geojson").read_bytes())
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


def _metres(geom: Any) -> Any:
    """Degrees to metres around SF (equirectangular): within 1 % over a few km."""
    scale = np.array([111_320 * math.cos(math.radians(37.77)), 110_574])
    return shapely.transform(geom, lambda xy: xy * scale)


def _flood_reach() -> tuple[set[str], set[str]]:
    """Communities surely within 2 km of the flood's reports (< 1.9 km) and surely beyond
    (> 2.1 km); the warning's neighbours are measured geodesically by PostGIS."""
    places = (scenario.CREEK, scenario.CHANNEL, scenario.BRANNAN, scenario.TOWNSEND)
    hull = _metres(MultiPoint([(p.lon, p.lat) for p in places]).convex_hull)
    dist = {n: _metres(g).distance(hull) for n, g in _neighbourhoods().items()}
    others = set(dist) - set(scenario.FLOOD_SIDES)
    return {n for n in others if dist[n] < 1900}, {n for n in others if dist[n] > 2100}


def _assert_picture(first: dict[str, Any], tmp_path: Path) -> None:
    incidents, risk = first["incidents"], first["risk"]
    assert incidents["total"] > 0 and incidents["by_verification"]["corroborated"] > 0
    assert incidents["by_verification"]["refuted"] >= 1
    assert sum(incidents["by_verification"].values()) == incidents["total"]
    assert sum(incidents["by_state"].values()) == incidents["total"]
    assert set(risk) == {"blue", "yellow", "orange", "red"}
    assert risk["red"] >= 1  # the flood: Extreme and corroborated; the replay alone never is
    assert first["warnings"]["count"] == len(first["warnings"]["items"]) >= 1
    assert first["picture"]["as_of"].startswith("2018-12-31T")  # the picture's clock, not now
    path = Path(first["picture"]["path"])
    assert path == tmp_path / ".hub" / "demo" / "picture.svg" and path.is_file()
    _assert_svg(path, first)


def _assert_svg(path: Path, first: dict[str, Any]) -> None:
    root = ElementTree.parse(path).getroot()  # our own file: well-formed XML or it fails
    assert root.tag == SVG + "svg"
    paths = list(root.iter(SVG + "path"))
    outlines = [p.findtext(SVG + "title", "") for p in paths if p.get("class") == "community"]
    assert sorted(outlines) == sorted(_neighbourhoods())  # the 41, each once
    cells = [p for p in paths if p.get("fill")]
    assert len(cells) == sum(first["risk"].values())
    flagged = [p.findtext(SVG + "title", "") for p in paths if p.get("class") == "flagged"]
    neighbours = {n for w in first["warnings"]["items"] for n in w["neighbours"]}
    assert sorted(t.split(":")[0] for t in flagged) == sorted(neighbours)
    groups = Counter(g.get("class") for g in root.iter(SVG + "g"))
    assert groups["warning"] == first["warnings"]["count"]
    assert groups["refuted"] == first["incidents"]["by_verification"]["refuted"]


def _assert_scenario(first: dict[str, Any]) -> None:
    s = first["scenario"]
    assert s["events_sent"] == s["events_stored"] == len(scenario.scenario_events(_t0()))
    assert s["flood_verification"] == "corroborated"
    assert sorted(s["flood_communities"]) == sorted(scenario.FLOOD_SIDES)  # across the border
    assert s["flood_warning_level"] == "red"
    near, far = _flood_reach()
    neighbours = set(s["flood_warning_neighbours"])
    assert scenario.FLAGGED in near and near <= neighbours and not neighbours & far
    assert s["flood_flagged_neighbour_sees_it"]  # through the API, as Potrero Hill's client
    listed = {w["id"]: w for w in first["warnings"]["items"]}[s["flood_incident"]]
    assert listed["neighbours"] == s["flood_warning_neighbours"] and listed["level"] == "red"
    assert sorted(s["rumour_communities"]) == sorted(scenario.RUMOUR_SIDES)
    assert s["rumour_verification"] == "refuted" and s["rumour_refuted_now"]
    assert s["rumour_decided_by"] == s["department_client"]
    assert s["rumour_reason"] == scenario.REFUTATION


def _assert_rerun_changes_nothing(first: dict[str, Any], second: dict[str, Any]) -> None:
    s1, s2 = first["scenario"], second["scenario"]
    assert s2["events_sent"] == s1["events_sent"]
    assert s2["events_stored"] == 0 and s2["duplicates_dropped"] == s2["events_sent"]
    assert {k: s2[k] for k in OUTCOME} == {k: s1[k] for k in OUTCOME}
    assert not s2["rumour_refuted_now"]  # refuted once, by the first run's department
    assert s2["department_client"] != s1["rumour_decided_by"]
    for key in ("incidents", "risk", "warnings", "picture"):
        assert second[key] == first[key], key


def _t0() -> datetime:
    return datetime(2018, 12, 31, 8, tzinfo=UTC)


def test_scenario_places_and_events() -> None:
    """Each story's places lie on both sides of a common border, near it, each in the community
    that reports it (shapely decides); the events are valid, unique and the same every time."""
    polys = _neighbourhoods()
    stories = (
        (scenario.FLOOD_SIDES, scenario.FLOOD_PLACES),
        (scenario.RUMOUR_SIDES, scenario.RUMOUR_PLACES),
    )
    for sides, places in stories:
        assert _metres(polys[sides[0]]).distance(_metres(polys[sides[1]])) < 1
        assert {p.community for p in places} == set(sides)  # both sides report
        for place in places:
            point = Point(place.lon, place.lat)
            assert polys[place.community].contains(point), place
            other = next(n for n in sides if n != place.community)
            assert _metres(polys[other]).distance(_metres(point)) < 500, place  # near the border
    events = scenario.scenario_events(_t0())
    assert events == scenario.scenario_events(_t0())
    assert len({e["event_id"] for e in events}) == len(events)
    parsed = [parse_event(orjson.dumps(e)) for e in events]
    assert _t0() < min(e.observed_at for e in parsed)
    assert max(e.observed_at for e in parsed) < _t0() + timedelta(hours=1)


def test_demo_that_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    """The API port is taken: ``up`` fails after starting the broker and fusion, and the demo
    must not leave those running."""
    env, ports, database_url = _demo_env(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", ports["api"]))
    squatter.listen()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hub", "demo", "--once"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode != 0
        assert "api" in done.stderr + done.stdout
    finally:
        squatter.close()
        drop_database(Settings(database_url=database_url))
    assert not port_open(ports["broker"]) and not port_open(ports["metrics"])
    assert not list((tmp_path / ".hub" / "run").glob("*.pid"))
