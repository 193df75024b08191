"""Grid cells of events: a community's own coded unit grid where it has one, else H3.

Imported cells are found per community with the community index of ``geo.assign`` (one
``CommunityIndex`` per community, its cells as the "polygons"), so the batch's points are
tested the fast way round: a tree over the points, probed with the few cells.

H3 ids are written ``h3/<hex index>``; imported ones ``<community_id>/<code>``. h3-py 4 has no
vectorised ``latlng_to_cell``: one call per point, ~1-1.5 us on this machine (10-15 ms for
10,000 points). The integer API plus ``format`` is ~20% cheaper than the string API.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import h3
import numpy as np
from h3.api import basic_int
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo.assign import UNASSIGNED, CommunityIndex

H3_PREFIX = "h3/"


def h3_cell_id(lon: float, lat: float, resolution: int) -> str:
    """``h3/<index>`` of the H3 cell holding the point (h3 takes latitude first)."""
    return f"{H3_PREFIX}{basic_int.latlng_to_cell(lat, lon, resolution):x}"


def h3_cell_ids(lon: np.ndarray, lat: np.ndarray, resolution: int) -> list[str]:
    """``h3_cell_id`` for many points (one h3 call each: the library has no bulk form)."""
    to_cell = basic_int.latlng_to_cell
    return [
        f"{H3_PREFIX}{to_cell(y, x, resolution):x}"
        for x, y in zip(np.asarray(lon).tolist(), np.asarray(lat).tolist(), strict=True)
    ]


def h3_index(cell_id: str) -> str:
    """The H3 index of an ``h3/<index>`` cell id (ValueError for any other id)."""
    if not cell_id.startswith(H3_PREFIX) or not h3.is_valid_cell(cell_id[len(H3_PREFIX) :]):
        raise ValueError(f"{cell_id!r} is not an h3/<index> cell id")
    return cell_id[len(H3_PREFIX) :]


def h3_cell_polygon(index: str) -> MultiPolygon:
    """The cell's boundary as a lon/lat MultiPolygon (h3 gives lat/lng pairs).

    Cells crossing the antimeridian come out as a polygon spanning the globe the wrong way;
    hub regions are cities, far from it.
    """
    ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(index)]
    return MultiPolygon([Polygon(ring)])


@dataclass(frozen=True)
class GridIndex:
    """The imported cells of every community that has a grid: community -> its cells."""

    by_community: Mapping[str, CommunityIndex] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: Sequence[tuple[str, str, BaseGeometry]]) -> GridIndex:
        """From (community_id, cell_id, polygon) rows."""
        grouped: dict[str, tuple[list[str], list[BaseGeometry]]] = {}
        for community_id, cell_id, geom in rows:
            ids, geoms = grouped.setdefault(community_id, ([], []))
            ids.append(cell_id)
            geoms.append(geom)
        return cls({c: CommunityIndex.build(ids, geoms) for c, (ids, geoms) in grouped.items()})

    def __len__(self) -> int:
        return sum(len(index) for index in self.by_community.values())

    def communities(self) -> frozenset[str]:
        return frozenset(self.by_community)

    def assign(
        self, lons: np.ndarray, lats: np.ndarray, communities: Sequence[str | None]
    ) -> list[str | None]:
        """The imported cell of its own community containing each point, else None.

        A point on the border of two cells takes the lower cell id, as in ``CommunityIndex``.
        """
        result: list[str | None] = [None] * len(communities)
        if not self.by_community or len(communities) == 0:
            return result
        lon, lat = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
        for community_id, rows in _rows_by_community(communities, self.communities()):
            cells = self.by_community[community_id]
            found = cells.assign(lon[rows], lat[rows])
            for row, i in zip(rows.tolist(), found.tolist(), strict=True):
                if i != UNASSIGNED:
                    result[row] = cells.ids[i]
        return result


def _rows_by_community(
    communities: Sequence[str | None], wanted: frozenset[str]
) -> list[tuple[str, np.ndarray]]:
    """Row numbers of each wanted community, grouped in one sort (no pass per community)."""
    keys = np.array([c if c in wanted else "" for c in communities], dtype=object)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    bounds = [*starts.tolist(), len(ordered)]
    return [
        (str(ordered[a]), order[a:b]) for a, b in itertools.pairwise(bounds) if ordered[a] != ""
    ]
