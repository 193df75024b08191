"""Community assignment (``geo.assign``) on the real San Francisco data, against plain shapely.

The 41 Analysis Neighborhoods become communities; every SFPD incident of December 2018 with
coordinates and every fire call of the sample is assigned. The reference is computed per
polygon with ``polygon.contains(point)`` (no tree, no fall-backs): for a point that is not on a
boundary the two must agree exactly. Figures quoted from ``data/README`` (shared data notes):
11,276 incidents with coordinates, 11,275 inside a polygon, all 11,275 in the neighbourhood the
CSV names; fire calls 999 of 1,000 inside, 994 of 999 matching their ``Neighborhood``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry

from geo.assign import UNASSIGNED, CommunityIndex

DATA = Path(__file__).resolve().parents[1] / "data" / "sf"
ON_BOUNDARY = 1e-9  # degrees: "on a boundary" means closer than this to some polygon boundary


@dataclass(frozen=True)
class Points:
    lon: np.ndarray
    lat: np.ndarray
    label: list[str]  # the neighbourhood the source CSV gives


@dataclass(frozen=True)
class Reference:
    contains: np.ndarray  # bool, polygons x points
    covers: np.ndarray  # bool, polygons x points
    on_boundary: np.ndarray  # bool, points

    def expected(self) -> np.ndarray:
        """Lowest index of a containing polygon, else of a covering one, else -1."""
        out = np.full(self.contains.shape[1], UNASSIGNED, dtype=np.int64)
        for matrix in (self.covers, self.contains):  # contains last: it wins
            hit = matrix.any(axis=0)
            out[hit] = matrix.argmax(axis=0)[hit]
        return out


def reference(polygons: Sequence[BaseGeometry], lon: np.ndarray, lat: np.ndarray) -> Reference:
    points = shapely.points(lon, lat)
    contains = np.array([shapely.contains(poly, points) for poly in polygons])
    covers = np.array([shapely.covers(poly, points) for poly in polygons])
    near = np.array([shapely.distance(poly.boundary, points) < ON_BOUNDARY for poly in polygons])
    return Reference(contains, covers, np.asarray(near.any(axis=0), dtype=bool))


@pytest.fixture(scope="module")
def neighbourhoods() -> tuple[list[str], list[BaseGeometry]]:
    collection = json.loads((DATA / "sf_analysis_neighborhoods.geojson").read_text())
    names = [f["properties"]["nhood"] for f in collection["features"]]
    polygons = [shape(f["geometry"]) for f in collection["features"]]
    return names, polygons


@pytest.fixture(scope="module")
def index(neighbourhoods: tuple[list[str], list[BaseGeometry]]) -> CommunityIndex:
    return CommunityIndex.build(*neighbourhoods)


@pytest.fixture(scope="module")
def incidents() -> Points:
    with (DATA / "sfpd_incident_reports_2018-12.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11_884
    located = [r for r in rows if r["Longitude"] and r["Latitude"]]
    return Points(
        np.array([float(r["Longitude"]) for r in located]),
        np.array([float(r["Latitude"]) for r in located]),
        [r["Analysis Neighborhood"] for r in located],
    )


@pytest.fixture(scope="module")
def fire_calls() -> Points:
    with (DATA / "sf_fire_calls_sample.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    lat_lon = [r["Location"].strip("()").split(",") for r in rows]  # "(lat, lon)"
    return Points(
        np.array([float(lon) for _, lon in lat_lon]),
        np.array([float(lat) for lat, _ in lat_lon]),
        [r["Neighborhood"] for r in rows],
    )


def test_the_41_neighbourhoods(neighbourhoods: tuple[list[str], list[BaseGeometry]]) -> None:
    names, polygons = neighbourhoods
    assert len(names) == len(set(names)) == 41
    assert all(isinstance(p, MultiPolygon) and p.is_valid for p in polygons)


@pytest.mark.parametrize("dataset", ["incidents", "fire_calls"])
def test_assignment_matches_shapely_reference(
    request: pytest.FixtureRequest,
    dataset: str,
    neighbourhoods: tuple[list[str], list[BaseGeometry]],
    index: CommunityIndex,
) -> None:
    pts: Points = request.getfixturevalue(dataset)
    got = index.assign(pts.lon, pts.lat)
    ref = reference(neighbourhoods[1], pts.lon, pts.lat)

    interior = ~ref.on_boundary
    hits = ref.contains[:, interior].sum(axis=0)
    expected = np.where(hits == 1, ref.contains[:, interior].argmax(axis=0), UNASSIGNED)
    wrong = np.flatnonzero(got[interior] != expected)
    assert hits.max() <= 1, "neighbourhoods overlap: a point inside two of them"
    assert len(wrong) == 0, (
        f"{dataset}: {len(wrong)} of {interior.sum()} points off the boundaries disagree "
        f"with shapely, e.g. {[(pts.lon[interior][i], pts.lat[interior][i]) for i in wrong[:5]]}"
    )
    # On (or within 1e-9 degrees of) a boundary: the lowest containing, else covering, polygon.
    assert np.array_equal(got, ref.expected())


def test_incidents_land_in_the_neighbourhood_the_csv_names(
    incidents: Points, index: CommunityIndex
) -> None:
    got = index.assign_ids(incidents.lon, incidents.lat)
    inside = [(g, label) for g, label in zip(got, incidents.label, strict=True) if g is not None]
    agree = sum(g == label for g, label in inside)
    outside = len(got) - len(inside)
    figures = f"{agree:,} of {len(inside):,} inside agree with the CSV; {outside} outside all"
    assert len(got) == 11_276, figures
    assert (len(inside), outside) == (11_275, 1), figures
    assert agree == len(inside), figures


def test_fire_calls_against_their_neighborhood_column(
    fire_calls: Points, index: CommunityIndex
) -> None:
    got = index.assign_ids(fire_calls.lon, fire_calls.lat)
    inside = [(g, label) for g, label in zip(got, fire_calls.label, strict=True) if g is not None]
    agree = sum(g == label for g, label in inside)
    figures = f"{agree} of {len(inside)} fire calls inside agree with `Neighborhood`"
    assert (len(got), len(inside), agree) == (1_000, 999, 994), figures


def test_the_point_outside_every_neighbourhood(
    incidents: Points, neighbourhoods: tuple[list[str], list[BaseGeometry]], index: CommunityIndex
) -> None:
    got = index.assign(incidents.lon, incidents.lat)
    (outside,) = np.flatnonzero(got == UNASSIGNED)
    pt = Point(incidents.lon[outside], incidents.lat[outside])
    names, polygons = neighbourhoods
    assert not any(poly.covers(pt) for poly in polygons)
    # It lies a few tens of metres south of the city line; the CSV (which uses its own,
    # slightly different, boundaries) puts it in the nearest neighbourhood.
    distance, nearest = min((poly.distance(pt), i) for i, poly in enumerate(polygons))
    assert ON_BOUNDARY < distance < 0.001
    assert incidents.label[outside] == names[nearest]


def test_shared_vertices_go_to_the_lowest_index(
    neighbourhoods: tuple[list[str], list[BaseGeometry]],
) -> None:
    names, polygons = neighbourhoods
    owners: dict[tuple[float, float], set[int]] = {}
    for i, multi in enumerate(polygons):
        for part in multi.geoms:
            for x, y in part.exterior.coords:
                owners.setdefault((x, y), set()).add(i)
    shared = sorted((xy, s) for xy, s in owners.items() if len(s) >= 2)
    assert len(shared) > 100
    sample = shared[:: max(1, len(shared) // 300)]
    lon = np.array([xy[0] for xy, _ in sample])
    lat = np.array([xy[1] for xy, _ in sample])
    ref = reference(polygons, lon, lat)
    assert not ref.contains.any(), "a vertex of two polygons lies on the boundary of both"
    assert ref.covers.sum(axis=0).min() >= 2

    forward = CommunityIndex.build(names, polygons).assign(lon, lat)
    assert forward.tolist() == [min(s) for _, s in sample]
    # The rule is "lowest index", not "whichever polygon comes first in some tree":
    # with the order reversed the other neighbour wins.
    last = len(polygons) - 1
    backward = CommunityIndex.build(names[::-1], polygons[::-1]).assign(lon, lat)
    assert backward.tolist() == [last - max(s) for _, s in sample]
    assert again_deterministic(names, polygons, lon, lat, forward)


def again_deterministic(
    names: list[str],
    polygons: list[BaseGeometry],
    lon: np.ndarray,
    lat: np.ndarray,
    first: np.ndarray,
) -> bool:
    return all(
        np.array_equal(CommunityIndex.build(names, polygons).assign(lon, lat), first)
        for _ in range(3)
    )


# --- small synthetic cases ---

WEST = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
EAST = Polygon([(1, 0), (2, 0), (2, 1), (1, 1)])


def test_point_on_a_shared_edge_takes_the_lower_index() -> None:
    lon, lat = np.array([1.0, 1.0, 1.0]), np.array([0.5, 0.0, 1.0])  # edge, both corners
    assert CommunityIndex.build(["w", "e"], [WEST, EAST]).assign(lon, lat).tolist() == [0, 0, 0]
    assert CommunityIndex.build(["e", "w"], [EAST, WEST]).assign(lon, lat).tolist() == [0, 0, 0]
    assert CommunityIndex.build(["e", "w"], [EAST, WEST]).assign_ids(lon, lat) == ["e"] * 3


def test_interior_outside_and_holes() -> None:
    ring = [(0, 0), (4, 0), (4, 4), (0, 4)]
    holed = MultiPolygon([Polygon(ring, [[(1, 1), (3, 1), (3, 3), (1, 3)]])])
    idx = CommunityIndex.build(
        ["w", "e", "holed"], [WEST, EAST, shapely.affinity.translate(holed, 10)]
    )
    lon = np.array([0.5, 1.5, 10.5, 12.0, 5.0, 2.0000001, -180.0])
    lat = np.array([0.5, 0.5, 0.5, 2.0, 5.0, 0.5, 90.0])
    assert idx.assign(lon, lat).tolist() == [
        0,
        1,
        2,
        UNASSIGNED,
        UNASSIGNED,
        UNASSIGNED,
        UNASSIGNED,
    ]
    assert idx.assign_ids(lon[:4], lat[:4]) == ["w", "e", "holed", None]


def test_overlapping_polygons_take_the_lower_index() -> None:
    big = Polygon([(0, 0), (3, 0), (3, 3), (0, 3)])
    small = Polygon([(1, 1), (2, 1), (2, 2), (1, 2)])
    lon, lat = np.array([1.5, 0.5]), np.array([1.5, 0.5])
    assert CommunityIndex.build(["big", "small"], [big, small]).assign(lon, lat).tolist() == [0, 0]
    assert CommunityIndex.build(["small", "big"], [small, big]).assign(lon, lat).tolist() == [0, 1]


def test_empty_inputs() -> None:
    idx = CommunityIndex.build(["w"], [WEST])
    assert idx.assign(np.array([]), np.array([])).tolist() == []
    none = CommunityIndex.build([], [])
    assert len(none) == 0
    assert none.assign(np.array([0.5]), np.array([0.5])).tolist() == [UNASSIGNED]
