"""Boundaries as real sources publish them, through the real parts: ``hub community import``
and ``hub grid import`` on a PostGIS database of their own, fusion on the session's broker.

The file is the real DataSF neighbourhoods (data/sf) published the way city district files
are: every part of a MultiPolygon a feature of its own with the same id (North Beach's 16
piers, Marina's 10 parts, ...), and the Mission (one polygon) cut in two along a line of
latitude. Events go into every part. The shoreline points are offsets (pyproj geodesic, due
west) from the city's westernmost vertex, on the Pacific at Outer Richmond: every polygon lies
east of it, so a point there is exactly that far from the nearest community.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from typer.testing import CliRunner

from hub.bench.workload import Incident, event_json
from hub.cli.main import app
from hub.settings import Settings, get_settings
from hub.store.db import connect
from hub.store.migrate import drop_database, upgrade
from tests.conftest import DATA
from tests.fusion_helpers import (
    consume_all,
    fusion_stats,
    own_stream,
    produce,
    running_worker,
    wait_until,
)

HOODS = DATA / "sf_analysis_neighborhoods.geojson"
GEOD = Geod(ellps="WGS84")
REASON = "hub-dlq-reason"


def _original() -> dict[str, BaseGeometry]:
    doc = json.loads(HOODS.read_text(encoding="utf-8"))
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


ORIGINAL = _original()


def _parts() -> list[tuple[str, BaseGeometry]]:
    """(id, part) of the file as published: MultiPolygons exploded, the Mission cut in two."""
    out: list[tuple[str, BaseGeometry]] = []
    for cid, geom in ORIGINAL.items():
        if cid == "Mission":
            x0, y0, x1, y1 = geom.bounds
            cut = (y0 + y1) / 2
            out += [(cid, geom.intersection(box(x0, y0, x1, cut)))]
            out += [(cid, geom.intersection(box(x0, cut, x1, y1)))]
        else:
            out += [(cid, part) for part in geom.geoms]
    return out


PARTS = _parts()


def _shoreline(metres: float) -> tuple[float, float]:
    """A point ``metres`` due west of San Francisco's westernmost vertex."""
    lon, lat = min((c for g in ORIGINAL.values() for c in shapely.get_coordinates(g)), key=min)
    west, lat_w, _ = GEOD.fwd(lon, lat, 270.0, metres)
    return float(west), float(lat_w)


@pytest.fixture(scope="module")
def parts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    features = [
        {"type": "Feature", "properties": {"nhood": cid}, "geometry": mapping(part)}
        for cid, part in PARTS
    ]
    path = tmp_path_factory.mktemp("boundaries") / "districts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture(scope="module")
def own_hub(database_url: str, broker: str) -> Iterator[Settings]:
    """A database of its own (the session's holds the 41 communities as one feature each)."""
    server = database_url.rsplit("/", 1)[0]
    settings = Settings(
        database_url=f"{server}/hub_bounds_{uuid.uuid4().hex[:10]}",
        kafka_bootstrap=broker,
        fusion_incidents=False,
    )
    upgrade(settings)
    try:
        yield settings
    finally:
        drop_database(settings)


def _cli(settings: Settings, *args: str) -> dict[str, Any]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, list(args), env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def imported(own_hub: Settings, parts_file: Path) -> dict[str, Any]:
    return _cli(
        own_hub, "community", "import", str(parts_file), "--id-field", "nhood",
        "--name-field", "nhood", "--json",
    )  # fmt: skip


def test_community_import_unions_parts_and_reports_them(
    own_hub: Settings, imported: dict[str, Any]
) -> None:
    assert len(imported["inserted"]) == 41 and imported["skipped"] == {}
    expected = {cid: len(g.geoms) for cid, g in ORIGINAL.items() if len(g.geoms) > 1}
    assert imported["merged"] == {**expected, "Mission": 2}
    assert imported["merged"]["North Beach"] == 16
    with connect(own_hub) as conn:
        rows = conn.execute(
            "SELECT id, ST_AsBinary(geom), ST_NumGeometries(geom), ST_IsValid(geom) FROM community"
        ).fetchall()
    stored = {cid: (shapely.from_wkb(wkb), n, valid) for cid, wkb, n, valid in rows}
    assert sorted(stored) == sorted(ORIGINAL)
    for cid, (geom, _, valid) in stored.items():
        assert valid and geom.area == pytest.approx(ORIGINAL[cid].area, rel=1e-9), cid
    assert stored["North Beach"][1] == 16 and stored["Mission"][1] == 1  # the cut dissolved


def test_grid_import_unions_features_sharing_a_code(
    own_hub: Settings, imported: dict[str, Any], tmp_path: Path
) -> None:
    beach = ORIGINAL["North Beach"]
    features = [
        {"type": "Feature", "properties": {"code": f"NB-{i % 3}"}, "geometry": mapping(p)}
        for i, p in enumerate(beach.geoms)
    ]
    path = tmp_path / "grid.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    report = _cli(
        own_hub, "grid", "import", str(path), "--community", "North Beach",
        "--code-property", "code", "--json",
    )  # fmt: skip
    assert sorted(report["inserted"]) == ["NB-0", "NB-1", "NB-2"]
    assert report["merged"] == {"NB-0": 6, "NB-1": 5, "NB-2": 5}
    with connect(own_hub) as conn:
        rows = conn.execute(
            "SELECT code, ST_NumGeometries(geom), ST_Area(geom) FROM grid_cell"
            " WHERE community_id = 'North Beach' ORDER BY code"
        ).fetchall()
    assert [(c, n) for c, n, _ in rows] == [("NB-0", 6), ("NB-1", 5), ("NB-2", 5)]
    assert sum(a for _, _, a in rows) == pytest.approx(beach.area, rel=1e-9)


def _event(lon: float, lat: float, tag: str) -> tuple[bytes, bytes]:
    inc = Incident(tag, "2018-12-01T10:00:00-08:00", lon, lat, "", "Other")
    return b"k", event_json(inc, uuid.uuid4(), community=None)


def _stored(settings: Settings, messages: list[tuple[bytes, bytes]]) -> list[tuple[Any, ...]]:
    ids = [orjson.loads(v)["event_id"] for _, v in messages]
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT event_id::text, community_id, properties FROM event"
            " WHERE event_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    by_id = {r[0]: (r[1], r[2]) for r in rows}
    return [by_id.get(i, (None, None)) for i in ids]


def test_events_in_every_part_and_off_the_shore(
    own_hub: Settings, imported: dict[str, Any]
) -> None:
    settings = own_stream(own_hub, "bounds", fusion_session_timeout_ms=6000)
    points = [(cid, part.representative_point()) for cid, part in PARTS]
    in_parts = [_event(p.x, p.y, cid) for cid, p in points]
    offshore = [_event(*_shoreline(30.0), "30 m"), _event(*_shoreline(300.0), "300 m")]
    produce(settings, in_parts + offshore)
    with running_worker(settings) as worker:
        wait_until(lambda: fusion_stats(settings)["consumed"] == len(PARTS) + 2, 60, "consumed")
    assert worker.metrics.registry.get_sample_value("hub_fusion_events_snapped_total") == 1
    assert fusion_stats(settings) == {
        "consumed": len(PARTS) + 2, "stored": len(PARTS) + 1, "duplicates": 0, "dlq": 1,
    }  # fmt: skip

    stored = _stored(settings, in_parts)
    assert [cid for cid, _ in stored] == [cid for cid, _ in PARTS]  # every part, its own id
    assert all("snapped_m" not in props for _, props in stored)
    ((cid, props),) = _stored(settings, offshore[:1])
    assert cid == "Outer Richmond"
    assert props == {"row_id": "30 m", "incident_category": "Other", "snapped_m": 30}

    (dead,) = consume_all(settings, settings.dlq_topic, 1)
    headers = dict(dead.headers)
    assert headers[REASON] == b"unknown_community" and dead.value == offshore[1][1]
    assert b"within 100 m" in headers["hub-dlq-detail"]


def test_snapping_off_dead_letters_the_30_m_point(
    own_hub: Settings, imported: dict[str, Any]
) -> None:
    settings = own_stream(own_hub, "nosnap", community_snap_m=0.0, fusion_session_timeout_ms=6000)
    message = _event(*_shoreline(30.0), "30 m")
    produce(settings, [message])
    with running_worker(settings):
        wait_until(lambda: fusion_stats(settings)["consumed"] == 1, 60, "consumed")
    assert fusion_stats(settings)["dlq"] == 1 and _stored(settings, [message]) == [(None, None)]
    (dead,) = consume_all(settings, settings.dlq_topic, 1)
    assert dict(dead.headers)[REASON] == b"unknown_community"
