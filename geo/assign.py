"""Assign points to community polygons.

``STRtree(points).query(polygons, predicate="contains")`` is ~25x faster than querying the
polygon tree once per point (measured ~1M vs ~42k points/s), so the tree is built over the
points of each batch and probed with the few community polygons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

UNASSIGNED = -1


@dataclass(frozen=True)
class CommunityIndex:
    """Community ids and their (valid) polygons, prepared for containment tests."""

    ids: tuple[str, ...]
    polygons: np.ndarray  # of shapely geometries

    @classmethod
    def build(cls, ids: Sequence[str], polygons: Sequence[BaseGeometry]) -> CommunityIndex:
        geoms = np.asarray(polygons, dtype=object)
        shapely.prepare(geoms)
        return cls(tuple(ids), geoms)

    def __len__(self) -> int:
        return len(self.ids)

    def assign(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Index into ``ids`` of the polygon containing each point, or ``UNASSIGNED``.

        A point on a shared boundary is contained by neither polygon; it falls back to
        ``covers`` and then takes the lowest index, so the answer is deterministic.
        """
        result = np.full(len(lon), UNASSIGNED, dtype=np.int64)
        if len(lon) == 0 or len(self.ids) == 0:
            return result
        points = shapely.points(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        tree = STRtree(points)
        poly_idx, point_idx = tree.query(self.polygons, predicate="contains")
        # Reverse order so that the lowest polygon index wins when polygons overlap.
        result[point_idx[::-1]] = poly_idx[::-1]
        missing = np.flatnonzero(result == UNASSIGNED)
        if len(missing):
            sub = STRtree(points[missing])
            p_idx, s_idx = sub.query(self.polygons, predicate="covers")
            result[missing[s_idx[::-1]]] = p_idx[::-1]
        return result

    def assign_ids(self, lon: np.ndarray, lat: np.ndarray) -> list[str | None]:
        idx = self.assign(lon, lat)
        return [self.ids[i] if i != UNASSIGNED else None for i in idx]
