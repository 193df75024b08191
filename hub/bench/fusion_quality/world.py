"""The city the reports happen in: its communities, who counts as whose neighbour, and metres
to degrees at the city's latitude."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely import STRtree

from geo.assign import UNASSIGNED, CommunityIndex
from geo.geojson import read_communities
from hub.bench.workload import NEIGHBOURHOODS


def local_metric(lon0: float, lat0: float) -> Transformer:
    """WGS84 -> metres of an azimuthal equidistant projection centred on (lon0, lat0): at a
    city's scale its distances are exact to well under 0.1 %, wherever the city is."""
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    return Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)


# WGS84 ellipsoid: metres per radian along the meridian (M) and the parallel (N cos lat).
_A, _E2 = 6_378_137.0, 6.694_379_990_14e-3


def metres_to_degrees(
    east_m: np.ndarray, north_m: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Small displacements in metres -> (dlon, dlat) in degrees at latitude ``lat``."""
    phi = np.radians(lat)
    w = 1.0 - _E2 * np.sin(phi) ** 2
    meridian = _A * (1.0 - _E2) / w**1.5
    prime_vertical = _A / np.sqrt(w)
    return np.degrees(east_m / (prime_vertical * np.cos(phi))), np.degrees(north_m / meridian)


@dataclass(frozen=True)
class World:
    """The communities reports are assigned to, and who counts as whose neighbour."""

    index: CommunityIndex
    neighbours: dict[str, tuple[str, ...]]
    tree: STRtree  # over the polygons, for the nearest one to a point outside all of them

    def community_of(self, lon: np.ndarray, lat: np.ndarray) -> list[str]:
        idx = self.index.assign(lon, lat)
        outside = np.flatnonzero(idx == UNASSIGNED)
        if len(outside):
            points = shapely.points(lon[outside], lat[outside])
            # Degrees are no metres, but the nearest of 41 polygons a few metres off a
            # shoreline is the same in either; ties go to the lowest index (deterministic).
            found = self.tree.query_nearest(points, all_matches=False)
            idx[outside[found[0]]] = found[1]
        return [self.index.ids[i] for i in idx]


def build_world(
    ids: Sequence[str], polygons: Sequence[Any], neighbour_distance_m: float = 2000.0
) -> World:
    return World(
        CommunityIndex.build(ids, polygons),
        neighbours_within(ids, polygons, neighbour_distance_m),
        STRtree(np.asarray(polygons, dtype=object)),
    )


def neighbours_within(
    ids: Sequence[str], polygons: Sequence[Any], distance_m: float
) -> dict[str, tuple[str, ...]]:
    """Community -> the other communities whose polygon lies within ``distance_m`` of its own,
    measured in metres (a local equidistant projection), not degrees."""
    geoms = np.asarray(polygons, dtype=object)
    lon0, lat0 = shapely.centroid(shapely.union_all(geoms)).coords[0]
    to_m = local_metric(lon0, lat0)
    metric = shapely.transform(geoms, lambda xy: np.column_stack(to_m.transform(*xy.T)))
    left, right = STRtree(metric).query(metric, predicate="dwithin", distance=distance_m)
    found: dict[str, set[str]] = {i: set() for i in ids}
    for a, b in zip(left, right, strict=True):
        if a != b:
            found[ids[a]].add(ids[b])
    return {k: tuple(sorted(v)) for k, v in found.items()}


@cache
def sf_world(path: Path = NEIGHBOURHOODS, neighbour_distance_m: float = 2000.0) -> World:
    """The 41 SF Analysis Neighbourhoods, read as ``hub community import`` reads them."""
    rows, _ = read_communities(path, "nhood", "nhood")
    return build_world([r.id for r in rows], [r.geom for r in rows], neighbour_distance_m)
