"""Snapping to the nearest community (``geo.nearest``, ``CommunityIndex.place``) and the union
of features sharing an id (``geo.geojson``, ``hub.store.grids.read_grid``): pure logic on the
real SF neighbourhoods (data/sf), against independent references.

The reference distance is shapely's planar distance after projecting with pyproj to UTM zone
10N (San Francisco is 0.5 degrees from its central meridian: scale error below 0.04 %), and the
geodesic (pyproj.Geod) for a point offset from a vertex.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from connectors.csv_source import RowConverter
from connectors.mapping import parse_mapping
from geo.assign import UNASSIGNED, CommunityIndex
from geo.geojson import read_communities, union_parts
from geo.nearest import Edges, nearest_within
from hub.store.grids import read_grid
from tests.conftest import DATA
from tests.test_csv_connector import BASE, _row

HOODS = DATA / "sf_analysis_neighborhoods.geojson"
GEOD = Geod(ellps="WGS84")
UTM_10N = Transformer.from_crs(4326, 32610, always_xy=True)
REL = 1e-3  # our local plane against UTM: both well within this


def _hoods() -> tuple[list[str], list[MultiPolygon]]:
    rows, _ = read_communities(HOODS, "nhood", "nhood")
    return [r.id for r in rows], [r.geom for r in rows]


IDS, POLYGONS = _hoods()
UTM_POLYGONS = [
    shapely.transform(p, lambda x, y: UTM_10N.transform(x, y), interleaved=False) for p in POLYGONS
]
INDEX = CommunityIndex.build(IDS, POLYGONS, snap_m=150.0)


def _utm_distances(lon: float, lat: float) -> np.ndarray:
    x, y = UTM_10N.transform(lon, lat)
    return shapely.distance(np.array(UTM_POLYGONS), shapely.Point(x, y))


# Points near the city's edge, where snapping happens: a vertex of the union's boundary, then
# a geodesic step in any direction (most land outside, some inside, some beyond reach).
EDGE = shapely.get_coordinates(shapely.union_all(POLYGONS).boundary)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, len(EDGE) - 1),
    st.floats(0.0, 360.0),
    st.floats(0.5, 400.0),
)
def test_nearest_within_agrees_with_utm_distances(vertex: int, bearing: float, step: float) -> None:
    lon, lat, _ = GEOD.fwd(EDGE[vertex][0], EDGE[vertex][1], bearing, step)
    placed = INDEX.place(np.array([lon]), np.array([lat]))
    ref = _utm_distances(lon, lat)
    got, metres = int(placed.index[0]), float(placed.snapped_m[0])
    if ref.min() == 0.0:  # inside (or on) a polygon: assigned, never snapped
        assert got != UNASSIGNED and np.isnan(metres)
    elif ref.min() < 150.0 * (1 - REL):
        assert got != UNASSIGNED
        assert metres == pytest.approx(ref.min(), rel=REL, abs=0.01)
        assert ref[got] == pytest.approx(ref.min(), rel=REL, abs=0.01)  # a nearest one
    elif ref.min() > 150.0 * (1 + REL):
        assert got == UNASSIGNED and np.isnan(metres)


def test_the_sample_reaches_every_case() -> None:
    """The property test above is not vacuous: on a fixed sample of its inputs, points land
    inside, snap, and stay out."""
    rng = np.random.default_rng(15)
    n = 400
    start = EDGE[rng.integers(0, len(EDGE), n)]
    lon, lat, _ = GEOD.fwd(start[:, 0], start[:, 1], rng.uniform(0, 360, n), rng.uniform(1, 400, n))
    placed = INDEX.place(lon, lat)
    snapped = ~np.isnan(placed.snapped_m)
    inside = (placed.index != UNASSIGNED) & ~snapped
    outside = placed.index == UNASSIGNED
    assert snapped.sum() > 50 and inside.sum() > 50 and outside.sum() > 20


def test_a_point_offshore_snaps_with_its_geodesic_distance() -> None:
    # The westernmost vertex of the city (Outer Richmond, on the Pacific): every polygon lies
    # east of it, so a point due west of it is nearest to that very vertex.
    coords = [(cid, shapely.get_coordinates(p)) for cid, p in zip(IDS, POLYGONS, strict=True)]
    owner, vertex = min(((cid, c[c[:, 0].argmin()]) for cid, c in coords), key=lambda t: t[1][0])
    for metres in (5.0, 30.0, 99.0, 149.0):
        lon, lat, _ = GEOD.fwd(vertex[0], vertex[1], 270.0, metres)
        placed = INDEX.place_ids(np.array([lon]), np.array([lat]))
        assert placed == [(owner, round(metres))]
        found, dist = nearest_within(
            Edges.build(INDEX.polygons), np.array([lon]), np.array([lat]), 200.0
        )
        assert IDS[int(found[0])] == owner
        assert dist[0] == pytest.approx(metres, abs=0.01)  # within a centimetre of the geodesic
    lon, lat, _ = GEOD.fwd(vertex[0], vertex[1], 270.0, 151.0)
    assert INDEX.place_ids(np.array([lon]), np.array([lat])) == [(None, None)]


def test_metres_not_degrees_decide_which_is_nearest() -> None:
    # At 60 degrees north a degree of longitude is half a degree of latitude: a square 60 m
    # east is nearer than one 70 m north, though in degrees it is the other way round.
    lat0, per_deg_lat = 60.0, 111_412.0
    per_deg_lon = per_deg_lat * np.cos(np.radians(lat0))
    east = box(60 / per_deg_lon, lat0 - 0.001, 0.01, lat0 + 0.001)
    north = box(-0.001, lat0 + 70 / per_deg_lat, 0.001, lat0 + 0.01)
    polygons = np.array([north, east])
    point = shapely.Point(0.0, lat0)
    degrees_pick = STRtree(polygons).query_nearest(point)[0]
    assert degrees_pick == 0, "in degrees the northern square looks nearer"
    found, dist = nearest_within(Edges.build(polygons), np.array([0.0]), np.array([lat0]), 100)
    assert found.tolist() == [1] and dist[0] == pytest.approx(60.0, rel=2e-3)


def test_ties_take_the_lowest_index_whatever_the_order_of_points() -> None:
    a, b = box(-0.002, 0.0, -0.001, 0.001), box(0.001, 0.0, 0.002, 0.001)  # 111 m either side
    polygons = np.array([a, b])
    lon = np.array([0.0, 0.0015, -0.0015, 0.0])
    lat = np.array([0.0005, -0.0002, -0.0002, 0.0005])
    edges = Edges.build(polygons)
    found, _ = nearest_within(edges, lon, lat, 200.0)
    assert found.tolist() == [0, 1, 0, 0]
    back, _ = nearest_within(edges, lon[::-1], lat[::-1], 200.0)
    assert back.tolist() == found.tolist()[::-1]


def test_a_point_in_a_hole_snaps_to_the_holes_ring() -> None:
    # A courtyard 0.002 degrees across (~220 m E-W at the equator); its centre is ~111 m from
    # the ring north and south, and a second polygon lies far away.
    ring = box(-0.01, -0.01, 0.01, 0.01)
    holed = Polygon(ring.exterior.coords, [box(-0.001, -0.001, 0.001, 0.001).exterior.coords])
    polygons = np.array([box(1.0, 1.0, 1.1, 1.1), holed])
    found, dist = nearest_within(Edges.build(polygons), np.array([0.0]), np.array([0.0]), 150)
    assert found.tolist() == [1] and dist[0] == pytest.approx(110.574, abs=0.01)  # 0.001 deg N
    found, _ = nearest_within(Edges.build(polygons), np.array([0.0]), np.array([0.0]), 100)
    assert found.tolist() == [UNASSIGNED]


def test_place_snaps_only_points_outside_and_only_when_asked() -> None:
    lon, lat, _ = GEOD.fwd(-122.51494758, 37.77971939, 270.0, 30.0)
    inside = (-122.4148, 37.7634)  # 17th & Folsom, Mission
    lons, lats = np.array([inside[0], lon]), np.array([inside[1], lat])
    off = CommunityIndex.build(IDS, POLYGONS)  # snap_m 0: containment only
    assert off.place_ids(lons, lats) == [("Mission", None), (None, None)]
    assert off.edges is None
    assert INDEX.place_ids(lons, lats) == [("Mission", None), ("Outer Richmond", 30)]
    assert INDEX.place(lons, lats).index.tolist()[0] == INDEX.assign(lons, lats).tolist()[0]
    empty = CommunityIndex.build([], [], snap_m=100.0)
    assert empty.place_ids(lons, lats) == [(None, None), (None, None)]
    assert INDEX.place_ids(np.array([]), np.array([])) == []


# --- union of parts --------------------------------------------------------------------------


def _exploded(path: Path) -> Path:
    """The SF file as sources publish districts with islands: one feature per polygon part."""
    doc = json.loads(HOODS.read_text(encoding="utf-8"))
    features = []
    for f in doc["features"]:
        geom = shapely.geometry.shape(f["geometry"])
        for part in getattr(geom, "geoms", [geom]):
            features.append({**f, "geometry": mapping(part)})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_features_sharing_an_id_are_unioned(tmp_path: Path) -> None:
    rows, report = read_communities(_exploded(tmp_path / "parts.geojson"), "nhood", "nhood")
    assert len(rows) == 41 and report.skipped == {} and report.repaired == {}
    original = dict(zip(IDS, POLYGONS, strict=True))
    assert report.merged == {cid: len(g.geoms) for cid, g in original.items() if len(g.geoms) > 1}
    assert report.merged["North Beach"] == 16  # the piers
    for row in rows:
        assert row.geom.is_valid and row.geom.area == pytest.approx(original[row.id].area, 1e-12)
        assert shapely.equals(row.geom, original[row.id])


def test_a_bad_part_is_repaired_or_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    west, east = box(0, 0, 1, 1), box(1, 0, 2, 1)  # touching: the shared edge dissolves
    bowtie = {"type": "Polygon", "coordinates": [[[3, 0], [4, 1], [4, 0], [3, 1], [3, 0]]]}
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    feats: list[dict[str, Any]] = [
        {"type": "Feature", "properties": {"id": "a", "name": None}, "geometry": mapping(west)},
        {"type": "Feature", "properties": {"id": "a", "name": "Area A"}, "geometry": bowtie},
        {"type": "Feature", "properties": {"id": "a"}, "geometry": line},
        {"type": "Feature", "properties": {"id": "a"}, "geometry": mapping(east)},
    ]
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    (row,), report = read_communities(path, "id", "name")
    assert report.merged == {"a": 3}
    assert report.repaired == {"a": "part 2: Self-intersection[3.5 0.5]"}
    assert report.skipped == {"feature #2 (a)": "LineString is not a (multi)polygon"}
    assert row.name == "Area A" and row.repaired == report.repaired["a"]
    assert row.geom.area == pytest.approx(2.5) and len(row.geom.geoms) == 3


# Coordinates as boundary files give them: degrees with 7 decimals (~1 cm). Subnormal floats,
# which hypothesis would otherwise try, break GEOS's overlay itself.
_DEGREES = st.integers(-50_000_000, 50_000_000).map(lambda k: k / 1e7)
_SIZE = st.integers(100_000, 30_000_000).map(lambda k: k / 1e7)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_DEGREES, _DEGREES, _SIZE, _SIZE), min_size=1, max_size=8))
def test_union_covers_every_part_and_nothing_else(boxes: list[tuple[float, ...]]) -> None:
    parts: list[Polygon | MultiPolygon] = [box(x, y, x + w, y + h) for x, y, w, h in boxes]
    merged, repaired = union_parts(parts)
    assert merged is not None and repaired is None and merged.is_valid
    assert isinstance(merged, MultiPolygon)
    assert all(merged.covers(p) for p in parts)
    assert merged.area <= sum(p.area for p in parts) + 1e-9
    assert merged.area == pytest.approx(shapely.union_all(parts).area, rel=1e-9)
    # No polygon of the union is outside every part: nothing was added.
    assert all(any(g.intersects(p) for p in parts) for g in merged.geoms)


def test_grid_codes_shared_by_features_are_unioned(tmp_path: Path) -> None:
    north_beach = POLYGONS[IDS.index("North Beach")]
    feats = [
        {"type": "Feature", "properties": {"code": "NB", "n": "piers"}, "geometry": mapping(p)}
        for p in north_beach.geoms
    ] + [{"type": "Feature", "properties": {"code": "X"}, "geometry": mapping(box(0, 0, 1, 1))}]
    path = tmp_path / "grid.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    cells = {c.code: c for c in read_grid(path, "code", "n")}
    assert sorted(cells) == ["NB", "X"]
    assert cells["NB"].parts_merged == 16 and cells["X"].parts_merged == 1
    assert cells["NB"].name == "piers" and cells["NB"].invalid is None
    assert shapely.equals(shapely.from_wkb(cells["NB"].wkb), north_beach)


def test_connector_with_communities_snaps_as_fusion_does() -> None:
    """``--communities``: the connector fills the community with the same index, and the
    event carries ``properties.snapped_m``."""
    data = json.loads(json.dumps(BASE))
    del data["community"]
    lon, lat, _ = GEOD.fwd(-122.51494758, 37.77971939, 270.0, 30.0)
    far, _, _ = GEOD.fwd(-122.51494758, 37.77971939, 270.0, 300.0)
    rows = [
        _row(1, lat="37.7634", lon="-122.4148"),
        _row(2, lat=repr(lat), lon=repr(lon)),
        _row(3, lat=repr(lat), lon=repr(far)),
    ]
    index = CommunityIndex.build(IDS, POLYGONS, snap_m=100.0)
    conv = RowConverter(parse_mapping(data), communities=index, reporter_key=b"k" * 32).convert(
        rows
    )
    got = [(e.community_id, e.properties.get("snapped_m")) for e in conv.events]
    assert got == [("Mission", None), ("Outer Richmond", 30), (None, None)]
    assert conv.unassigned == 1
