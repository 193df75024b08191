"""Grid cells: the pure helpers against shapely and h3, ``hub grid import|list`` against a PostGIS
database of their own, and fusion end to end (real broker, real SFPD events) in the session's.

The test grid is real-derived and made at test time: the DataSF neighbourhood "Mission" cut
into a 4 x 4 lattice of its bounding box, each cell clipped to the neighbourhood (M-01..M-16).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h3
import numpy as np
import orjson
import polars as pl
import psycopg
import pytest
import shapely
from pydantic import ValidationError
from shapely.geometry import MultiPolygon, Point, box, mapping, shape
from shapely.geometry.base import BaseGeometry
from typer.testing import CliRunner, Result

from geo.grids import GridIndex, h3_cell_id, h3_cell_ids, h3_cell_polygon, h3_index
from hub.bench.workload import Incident, event_json, sf_incidents
from hub.cli.main import app
from hub.fusion.assign import GridResolver
from hub.settings import Settings, get_settings
from hub.store.communities import import_communities
from hub.store.db import connect
from hub.store.grids import GridImportError, import_grid
from hub.store.migrate import drop_database, upgrade
from tests.conftest import DATA
from tests.fusion_helpers import fusion_stats, produce, running_worker, wait_until

HOODS = DATA / "sf_analysis_neighborhoods.geojson"
MISSION = "Mission"
ON_BOUNDARY = 1e-9  # degrees, as in test_geo: closer than this to a cell border is "on" it


# --- the real-derived grid -------------------------------------------------------------------


def mission_polygon() -> BaseGeometry:
    doc = json.loads(HOODS.read_text(encoding="utf-8"))
    return shape(
        next(f for f in doc["features"] if f["properties"]["nhood"] == MISSION)["geometry"]
    )


def mission_lattice(n: int = 4) -> dict[str, BaseGeometry]:
    """code -> cell: the bounding box cut n x n, each part clipped to the neighbourhood."""
    area = mission_polygon()
    x0, y0, x1, y1 = area.bounds
    dx, dy = (x1 - x0) / n, (y1 - y0) / n
    cells: dict[str, BaseGeometry] = {}
    for row in range(n):
        for col in range(n):
            part = box(x0 + col * dx, y0 + row * dy, x0 + (col + 1) * dx, y0 + (row + 1) * dy)
            clipped = part.intersection(area)
            if clipped.area > 0:
                cells[f"M-{len(cells) + 1:02d}"] = clipped
    return cells


def feature(code: str | None, geometry: Any, **props: Any) -> dict[str, Any]:
    geo = geometry if isinstance(geometry, dict) else mapping(geometry)
    return {"type": "Feature", "properties": {"code": code, **props}, "geometry": geo}


def write_grid(path: Path, features: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture(scope="module")
def lattice() -> dict[str, BaseGeometry]:
    cells = mission_lattice()
    assert len(cells) == 16, "every cell of the 4 x 4 lattice holds part of the Mission"
    return cells


@pytest.fixture
def grid_file(tmp_path: Path, lattice: dict[str, BaseGeometry]) -> Path:
    features = [feature(code, cell, label=f"unit {code}") for code, cell in lattice.items()]
    return write_grid(tmp_path / "mission-grid.geojson", features)


def reference_cells(
    lattice: dict[str, BaseGeometry], lon: np.ndarray, lat: np.ndarray
) -> tuple[list[str | None], np.ndarray]:
    """Per point the code of the cell containing it (shapely, cell by cell), and whether it lies
    on a cell border (where "contains" is false for both neighbours)."""
    points = shapely.points(lon, lat)
    found: list[str | None] = [None] * len(points)
    on_border = np.zeros(len(points), dtype=bool)
    for code, cell in lattice.items():
        for i in np.flatnonzero(shapely.contains(cell, points)):
            assert found[i] is None, "lattice cells do not overlap"
            found[i] = code
        on_border |= shapely.distance(cell.boundary, points) < ON_BOUNDARY
    return found, on_border


# --- pure: H3 -----------------------------------------------------------------------------


def _sample(n: int, step: int = 7) -> list[Incident]:
    return list(sf_incidents()[::step][:n])


def test_h3_cell_of_a_point_contains_it_and_matches_h3() -> None:
    for inc in _sample(300):
        cell_id = h3_cell_id(inc.lon, inc.lat, 9)
        assert cell_id == "h3/" + h3.latlng_to_cell(inc.lat, inc.lon, 9)
        polygon = h3_cell_polygon(h3_index(cell_id))
        assert isinstance(polygon, MultiPolygon) and polygon.is_valid
        assert polygon.contains(Point(inc.lon, inc.lat)), (inc, cell_id)
        # lon/lat order: the polygon sits in San Francisco, not at (lat, lon) off Antarctica
        assert -123 < polygon.centroid.x < -122 and 37 < polygon.centroid.y < 38


def test_h3_bulk_equals_one_by_one() -> None:
    incs = _sample(500, step=11)
    lon, lat = np.array([i.lon for i in incs]), np.array([i.lat for i in incs])
    for resolution in (0, 7, 9, 15):
        bulk = h3_cell_ids(lon, lat, resolution)
        assert bulk == [h3_cell_id(x, y, resolution) for x, y in zip(lon, lat, strict=True)]
        assert {h3.get_resolution(h3_index(c)) for c in bulk} == {resolution}


def test_h3_index_refuses_other_ids() -> None:
    for bad in ("Mission/M-01", "h3/zzz", "892830828cbffff"):
        with pytest.raises(ValueError, match="not an h3/<index> cell id"):
            h3_index(bad)


def test_resolution_setting_bounds_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().grid_h3_resolution == 9
    monkeypatch.setenv("HUB_GRID_H3_RESOLUTION", "7")
    assert Settings().grid_h3_resolution == 7
    for bad in ("-1", "16"):
        monkeypatch.setenv("HUB_GRID_H3_RESOLUTION", bad)
        with pytest.raises(ValidationError):
            Settings()


# --- pure: imported cells and the resolver ---------------------------------------------------


def _grid_index(lattice: dict[str, BaseGeometry]) -> GridIndex:
    return GridIndex.build([(MISSION, f"{MISSION}/{c}", g) for c, g in lattice.items()])


def test_grid_index_matches_shapely_and_keeps_to_the_community(
    lattice: dict[str, BaseGeometry],
) -> None:
    incs = sf_incidents()
    lon, lat = np.array([i.lon for i in incs]), np.array([i.lat for i in incs])
    communities = [i.community for i in incs]
    got = _grid_index(lattice).assign(lon, lat, communities)

    expected, on_border = reference_cells(lattice, lon, lat)
    mission = np.array([c == MISSION for c in communities])
    checked = 0
    for i in np.flatnonzero(~on_border):
        want = f"{MISSION}/{expected[i]}" if mission[i] and expected[i] else None
        assert got[i] == want, (incs[i], got[i], want)
        checked += 1
    assert mission.sum() > 500 and checked > 11_000
    # The lattice covers the Mission: every Mission incident (CSV label) found a cell.
    assert all(got[i] is not None for i in np.flatnonzero(mission))
    # A grid belongs to its community: the same points claimed by a neighbour get no cell.
    claimed = _grid_index(lattice).assign(
        lon[mission], lat[mission], ["Bernal Heights"] * int(mission.sum())
    )
    assert claimed == [None] * int(mission.sum())


def test_grid_index_without_grids_and_on_empty_batches(lattice: dict[str, BaseGeometry]) -> None:
    empty = np.array([], dtype=float)
    assert GridIndex().assign(np.array([-122.4]), np.array([37.76]), [MISSION]) == [None]
    assert _grid_index(lattice).assign(empty, empty, []) == []
    assert _grid_index(lattice).assign(np.array([-122.4]), np.array([37.76]), [None]) == [None]


def _frame(incs: list[Incident], community: str | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "community_id": [community or i.community for i in incs],
            "lon": [i.lon for i in incs],
            "lat": [i.lat for i in incs],
        }
    )


def test_resolver_uses_the_grid_else_h3_at_its_resolution(
    lattice: dict[str, BaseGeometry],
) -> None:
    index = _grid_index(lattice)
    resolver = GridResolver(lambda: (1, index), lambda: 1, resolution=8)
    incs = [i for i in sf_incidents() if i.community in (MISSION, "Tenderloin")][:400]
    cells = resolver.assign(_frame(incs))["grid_cell"].to_list()
    for inc, cell in zip(incs, cells, strict=True):
        if inc.community == MISSION:
            assert cell.startswith(f"{MISSION}/M-")
        else:
            assert cell == "h3/" + h3.latlng_to_cell(inc.lat, inc.lon, 8)


def test_resolver_reloads_when_the_grid_version_changes(lattice: dict[str, BaseGeometry]) -> None:
    state: dict[str, Any] = {"version": 1, "index": GridIndex(), "loads": 0, "fail": False}

    def load() -> tuple[int, GridIndex]:
        state["loads"] += 1
        return state["version"], state["index"]

    def version() -> int:
        if state["fail"]:
            raise psycopg.OperationalError("database away")
        return int(state["version"])

    resolver = GridResolver(load, version, resolution=9, min_check_s=0.2)
    incs = [i for i in sf_incidents() if i.community == MISSION][:50]
    assert all(c.startswith("h3/") for c in resolver.assign(_frame(incs))["grid_cell"])

    state.update(version=2, index=_grid_index(lattice))
    resolver.assign(_frame(incs))  # within min_check_s of the load: no check yet
    assert state["loads"] == 1
    time.sleep(0.25)
    cells = resolver.assign(_frame(incs))["grid_cell"].to_list()
    assert state["loads"] == 2 and all(c.startswith(f"{MISSION}/") for c in cells)

    state.update(fail=True)  # a failed check keeps the loaded grid and the stream going
    time.sleep(0.25)
    assert resolver.assign(_frame(incs))["grid_cell"].to_list() == cells


# --- import and the command line (a database of their own) ----------------------------------


@pytest.fixture(scope="module")
def own_database(database_url: str) -> Iterator[Settings]:
    server = database_url.rsplit("/", 1)[0]
    settings = Settings(database_url=f"{server}/hub_grids_{uuid.uuid4().hex[:10]}")
    upgrade(settings)
    with connect(settings) as conn:
        import_communities(conn, HOODS, "nhood", "nhood")
    try:
        yield settings
    finally:
        drop_database(settings)


def grid(settings: Settings, *args: str) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app,
            ["grid", *args],
            env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"},
        )
    finally:
        get_settings.cache_clear()


def imported(settings: Settings, path: Path, *extra: str) -> dict[str, Any]:
    result = grid(
        settings, "import", str(path), "--community", MISSION, "--code-property", "code", *extra
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def stored_cells(settings: Settings) -> dict[str, tuple[str | None, bool, float]]:
    """id -> (name, repaired, area in degrees²) of the Mission's stored cells."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT id, name, repaired, ST_Area(geom) FROM grid_cell WHERE community_id = %s",
            (MISSION,),
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_import_then_reimport_replaces_the_communitys_grid(
    own_database: Settings, grid_file: Path, lattice: dict[str, BaseGeometry], tmp_path: Path
) -> None:
    report = imported(own_database, grid_file, "--json", "--name-property", "label")
    assert sorted(report["inserted"]) == sorted(lattice) and report["deleted"] == []
    assert report["repaired"] == {} and report["outside"] == {}
    cells = stored_cells(own_database)
    assert sorted(cells) == [f"{MISSION}/{code}" for code in sorted(lattice)]
    assert cells[f"{MISSION}/M-07"][0] == "unit M-07"
    total = sum(area for _, _, area in cells.values())
    assert total == pytest.approx(mission_polygon().area, rel=1e-9)  # the lattice tiles it

    # Re-import: M-15 and M-16 are gone from the file, M-01 renamed; one transaction.
    features = [
        feature(code, cell, label="north-west" if code == "M-01" else f"unit {code}")
        for code, cell in lattice.items()
        if code not in ("M-15", "M-16")
    ]
    report = imported(
        own_database,
        write_grid(tmp_path / "v2.geojson", features),
        "--json",
        "--name-property",
        "label",
    )
    assert report["inserted"] == [] and len(report["updated"]) == 14
    assert report["deleted"] == ["M-15", "M-16"]
    cells = stored_cells(own_database)
    assert len(cells) == 14 and cells[f"{MISSION}/M-01"][0] == "north-west"


def test_bowtie_is_repaired_and_a_cell_outside_is_warned_about(
    own_database: Settings, lattice: dict[str, BaseGeometry], tmp_path: Path
) -> None:
    x0, y0, x1, y1 = lattice["M-06"].bounds  # an inner cell: the bow-tie lies inside Mission
    bowtie = [[[x0, y0], [x1, y1], [x1, y0], [x0, y1], [x0, y0]]]  # self-intersecting
    mx0, my0, _, _ = mission_polygon().bounds
    straddling = box(mx0 - 0.002, my0 - 0.002, mx0 + 0.002, my0 + 0.002)  # the south-west corner
    features = [feature(c, g) for c, g in lattice.items() if c != "M-06"]
    features += [
        feature("M-06", {"type": "Polygon", "coordinates": bowtie}),
        feature("X-01", straddling),
    ]
    result = grid(
        own_database,
        "import",
        str(write_grid(tmp_path / "repair.geojson", features)),
        "--community",
        MISSION,
        "--code-property",
        "code",
    )
    assert result.exit_code == 0, result.output
    assert "repaired" in result.output and "Self-intersection" in result.output
    assert "X-01:" in result.output and "outside Mission" in result.output

    cells = stored_cells(own_database)
    _, repaired, area = cells[f"{MISSION}/M-06"]
    assert repaired is True and area == pytest.approx((x1 - x0) * (y1 - y0) / 2)  # two triangles
    assert f"{MISSION}/X-01" in cells  # warned about, imported all the same
    with connect(own_database) as conn:
        row = conn.execute(
            "SELECT bool_and(ST_IsValid(geom)), bool_and(GeometryType(geom) = 'MULTIPOLYGON')"
            " FROM grid_cell"
        ).fetchone()
    assert row == (True, True)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing code", "feature #1: no value in code property 'code'"),
        ("unknown community", "community 'Atlantis' is not registered"),
        ("not a FeatureCollection", "expected a GeoJSON FeatureCollection, got 'Feature'"),
        ("not a polygon", "cell 'M-02': LineString is not a (multi)polygon"),
        ("not JSON", "not a readable GeoJSON file"),
        ("no features", "the FeatureCollection has no features"),
    ],
)
def test_bad_files_exit_2_with_a_clear_message_and_import_nothing(
    own_database: Settings,
    lattice: dict[str, BaseGeometry],
    tmp_path: Path,
    case: str,
    message: str,
) -> None:
    cells = list(lattice.items())
    good = [feature(c, g) for c, g in cells[:3]]
    path, community = tmp_path / "bad.geojson", MISSION
    if case == "missing code":
        write_grid(path, [good[0], feature(None, cells[1][1]), good[2]])
    elif case == "unknown community":
        write_grid(path, good)
        community = "Atlantis"
    elif case == "not a FeatureCollection":
        path.write_text(json.dumps(good[0]))
    elif case == "not a polygon":
        write_grid(
            path,
            [good[0], feature("M-02", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})],
        )
    elif case == "not JSON":
        path.write_text("{not json")
    else:
        write_grid(path, [])
    before = stored_cells(own_database)
    result = grid(
        own_database, "import", str(path), "--community", community, "--code-property", "code"
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert stored_cells(own_database) == before


def test_errors_are_all_listed_at_once(
    own_database: Settings, lattice: dict[str, BaseGeometry], tmp_path: Path
) -> None:
    cells = list(lattice.values())
    path = write_grid(tmp_path / "many.geojson", [feature(None, g) for g in cells])
    with pytest.raises(GridImportError) as caught, connect(own_database) as conn:
        import_grid(conn, path, MISSION, "code")
    text = str(caught.value)
    assert "16 problem(s), nothing imported" in text and "... and 6 more" in text


def test_list_shows_grids_and_a_communitys_cells(own_database: Settings, grid_file: Path) -> None:
    imported(own_database, grid_file, "--json")
    result = grid(own_database, "list")
    assert result.exit_code == 0, result.output
    line = next(li for li in result.output.splitlines() if f" {MISSION} " in li)
    assert [c.strip() for c in line.split("│") if c.strip()][:3] == [MISSION, "imported", "16"]
    result = grid(own_database, "list", "--community", MISSION)
    assert result.exit_code == 0, result.output
    assert "16 cells" in result.output and f"{MISSION}/M-16" in result.output


# --- end to end: real broker, fusion, the session database -----------------------------------


def _events(incs: list[Incident]) -> list[tuple[bytes, bytes]]:
    return [(b"k", event_json(inc, uuid.uuid4())) for inc in incs]


def _stored_cells(settings: Settings, messages: list[tuple[bytes, bytes]]) -> list[str | None]:
    ids = [orjson.loads(v)["event_id"] for _, v in messages]
    with connect(settings) as conn:
        found = conn.execute(
            "SELECT event_id::text, grid_cell FROM event WHERE event_id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    rows: dict[str, str | None] = dict(found)
    assert len(rows) == len(ids)
    return [rows[i] for i in ids]


@pytest.fixture
def session_grid(hub_settings: Settings, sf_communities: list[str]) -> Iterator[Settings]:
    """The Mission has no grid when the test starts and none when it ends (shared database)."""
    delete = "DELETE FROM grid_cell WHERE community_id = %s"
    with connect(hub_settings) as conn:
        conn.execute(delete, (MISSION,))
    try:
        yield hub_settings
    finally:
        with connect(hub_settings) as conn:
            conn.execute(delete, (MISSION,))


def test_fusion_gives_every_event_its_grid_cell(
    session_grid: Settings, grid_file: Path, lattice: dict[str, BaseGeometry]
) -> None:
    settings = session_grid
    mission = [i for i in sf_incidents() if i.community == MISSION]
    others = [i for i in sf_incidents() if i.community != MISSION][::10]
    before = _events(mission[:200] + others[:200])  # before the Mission has a grid
    after = _events(mission + others)
    with running_worker(settings) as worker:
        worker.grids.min_check_s = 0.0  # check the grid version every batch
        produce(settings, before)
        wait_until(lambda: fusion_stats(settings)["stored"] == len(before), 60, "first events")
        with connect(settings) as conn:
            import_grid(conn, grid_file, MISSION, "code")
        produce(settings, after)
        total = len(before) + len(after)
        wait_until(lambda: fusion_stats(settings)["stored"] == total, 120, "all events")

    incs = mission[:200] + others[:200]
    got = _stored_cells(settings, before)
    assert got == [h3_cell_id(i.lon, i.lat, 9) for i in incs], "no grid yet: H3 everywhere"

    incs = mission + others
    got = _stored_cells(settings, after)
    lon, lat = np.array([i.lon for i in incs]), np.array([i.lat for i in incs])
    codes, on_border = reference_cells(lattice, lon, lat)
    in_grid = 0
    for inc, cell, code, border in zip(incs, got, codes, on_border, strict=True):
        if inc.community == MISSION and not border:
            assert cell == f"{MISSION}/{code}", (inc, cell)
            in_grid += 1
        elif inc.community != MISSION:
            assert cell == "h3/" + h3.latlng_to_cell(inc.lat, inc.lon, 9), (inc, cell)
    assert in_grid > 0.99 * len(mission)

    h3_ids = sorted({c for c in got + _stored_cells(settings, before) if c and c.startswith("h3/")})
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT id, source, community_id FROM grid_cell WHERE id = ANY(%s)", (h3_ids,)
        ).fetchall()
        outside = conn.execute(
            "SELECT count(*) FROM event e JOIN grid_cell g ON g.id = e.grid_cell"
            " WHERE e.event_id = ANY(%s::uuid[]) AND NOT ST_Covers(g.geom, e.geom)",
            ([orjson.loads(v)["event_id"] for _, v in after],),
        ).fetchone()
    assert sorted(r[0] for r in rows) == h3_ids
    assert {(r[1], r[2]) for r in rows} == {("h3", None)}
    assert outside == (0,), "every event lies in the polygon of its cell"
