"""The nearest polygon within a distance in metres, for points that no polygon contains.

Distances are measured in a local tangent plane centred on each point: longitude and latitude
offsets scaled by the WGS 84 ellipsoid's radii of curvature at the point's latitude (prime
vertical x cos(latitude) east, meridional north). Within a few hundred metres this differs from
the geodesic distance by far less than a centimetre, and unlike shapely's distances in degrees
it does not prefer a polygon to the north over a nearer one to the east (a degree of longitude
is only 0.8 of a degree of latitude at 37 degrees north).

STRtree.query_nearest measures in degrees, so it is not used: the candidates are the polygons
whose envelope meets a box around the point large enough for ``max_m`` in every direction;
each candidate is clipped to that box (distances up to ``max_m`` are unchanged by the clip),
projected, and measured, all vectorised over the (point, candidate) pairs.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import STRtree

UNASSIGNED = -1

WGS84_A = 6_378_137.0  # semi-major axis, metres
WGS84_E2 = 6.694_379_990_14e-3  # first eccentricity squared
_MIN_COS = 1e-9  # at the poles a degree of longitude spans (almost) nothing


def metres_per_degree(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(metres per degree of longitude, metres per degree of latitude) at each latitude."""
    phi = np.radians(lat)
    w = np.sqrt(1.0 - WGS84_E2 * np.sin(phi) ** 2)
    prime_vertical = WGS84_A / w
    meridional = WGS84_A * (1.0 - WGS84_E2) / w**3
    per_rad = np.pi / 180.0
    east = prime_vertical * np.maximum(np.cos(phi), _MIN_COS) * per_rad
    return east, meridional * per_rad


def nearest_within(
    tree: STRtree, polygons: np.ndarray, lon: np.ndarray, lat: np.ndarray, max_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest polygon within ``max_m`` metres of each point or ``UNASSIGNED``,
    its distance in metres or NaN). ``tree`` is an STRtree over ``polygons``. Equally near
    polygons: the lowest index wins, so the answer does not depend on the order of points."""
    n = len(lon)
    found = np.full(n, UNASSIGNED, dtype=np.int64)
    dist = np.full(n, np.nan)
    if n == 0 or max_m <= 0 or len(polygons) == 0:
        return found, dist
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    east, north = metres_per_degree(lat)
    half_lon = np.minimum(max_m / east, 360.0)
    half_lat = max_m / north
    boxes = shapely.box(lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat)
    point_i, poly_i = tree.query(boxes, predicate="intersects")
    if len(point_i) == 0:
        return found, dist
    pieces = shapely.intersection(polygons[poly_i], boxes[point_i])
    coords, owner = shapely.get_coordinates(pieces, return_index=True)
    at = point_i[owner]
    local = np.column_stack(
        ((coords[:, 0] - lon[at]) * east[at], (coords[:, 1] - lat[at]) * north[at])
    )
    projected = shapely.set_coordinates(pieces.copy(), local)
    metres = shapely.distance(projected, shapely.Point(0.0, 0.0))
    metres = np.where(np.isnan(metres), np.inf, metres)  # an empty piece: the box only touched
    # Per point, the nearest candidate, ties to the lowest polygon index.
    order = np.lexsort((poly_i, metres, point_i))
    first = order[np.r_[True, point_i[order][1:] != point_i[order][:-1]]]
    near = first[metres[first] <= max_m]
    found[point_i[near]] = poly_i[near]
    dist[point_i[near]] = metres[near]
    return found, dist
