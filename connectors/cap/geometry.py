"""CAP ``<area>`` -> a GeoJSON geometry of the event contract (WGS84, lon/lat order).

CAP writes points as ``lat,lon`` (the reverse of GeoJSON): polygons are whitespace-separated
``lat,lon`` pairs, circles ``lat,lon radius_km``. The contract has no circle, so a circle
becomes a polygon of ``segments`` vertices on the sphere (its centre and radius stay in the
properties); a radius of 0 is a point. Geocodes are placed through the mapping's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from connectors.cap.mapping import Place

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
LonLat = tuple[float, float]


class AreaProblem(ValueError):
    """An ``<area>`` value the hub cannot read; the message names the element."""


@dataclass
class Placed:
    """What the areas of an alert give: polygons (rings of lon/lat), points, and notes."""

    polygons: list[list[LonLat]] = field(default_factory=list)
    points: list[LonLat] = field(default_factory=list)
    circles: list[dict[str, Any]] = field(default_factory=list)
    geocodes_unknown: list[str] = field(default_factory=list)

    def geometry(self) -> dict[str, Any] | None:
        """One contract geometry, or None when nothing was placed. Polygons win over points
        (an alert's extent is its polygons); several polygons make a MultiPolygon."""
        unique = list(dict.fromkeys(tuple(r) for r in self.polygons))
        if len(unique) == 1:
            return {"type": "Polygon", "coordinates": [list(unique[0])]}
        if unique:
            return {"type": "MultiPolygon", "coordinates": [[list(r)] for r in unique]}
        if self.points:
            return {"type": "Point", "coordinates": self.points[0]}
        return None


def pair(text: str, element: str) -> LonLat:
    """``"38.47,-120.14"`` (CAP order: lat,lon) -> ``(-120.14, 38.47)``."""
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise AreaProblem(f"{element}: {text!r} is not a 'lat,lon' pair") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise AreaProblem(f"{element}: {text!r} is out of range (CAP order is lat,lon)")
    return lon, lat


def polygon(text: str) -> list[LonLat]:
    """A CAP polygon -> a closed lon/lat ring (an unclosed one is closed, as readers do)."""
    ring = [pair(p, "area/polygon") for p in text.split()]
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    if len(ring) < 4:
        raise AreaProblem(f"area/polygon: {len(ring)} points, a ring needs at least 4")
    return ring


def circle(text: str, segments: int) -> tuple[LonLat, float, list[LonLat] | None]:
    """A CAP circle -> (centre, radius_km, ring or None for a radius of 0)."""
    parts = text.split()
    if len(parts) != 2:
        raise AreaProblem(f"area/circle: {text!r} is not 'lat,lon radius_km'")
    centre = pair(parts[0], "area/circle")
    try:
        radius = float(parts[1])
    except ValueError:
        raise AreaProblem(f"area/circle: radius {parts[1]!r} is not a number") from None
    if not (math.isfinite(radius) and 0 <= radius <= 20_000):
        raise AreaProblem(f"area/circle: radius {parts[1]!r} km is out of range")
    if radius == 0:
        return centre, radius, None
    return centre, radius, circle_ring(centre, radius, segments)


def circle_ring(centre: LonLat, radius_km: float, segments: int) -> list[LonLat]:
    """Vertices at ``radius_km`` great-circle distance from ``centre`` (the destination-point
    formula), closed; longitudes wrapped into [-180, 180], latitudes clamped at the poles."""
    lon0, lat0 = math.radians(centre[0]), math.radians(centre[1])
    d = radius_km / EARTH_RADIUS_KM
    ring: list[LonLat] = []
    for k in range(segments):
        bearing = 2 * math.pi * k / segments
        lat = math.asin(
            math.sin(lat0) * math.cos(d) + math.cos(lat0) * math.sin(d) * math.cos(bearing)
        )
        lon = lon0 + math.atan2(
            math.sin(bearing) * math.sin(d) * math.cos(lat0),
            math.cos(d) - math.sin(lat0) * math.sin(lat),
        )
        lon_deg = (math.degrees(lon) + 540) % 360 - 180
        ring.append((round(lon_deg, 7), round(max(-90.0, min(90.0, math.degrees(lat))), 7)))
    ring.append(ring[0])
    return ring


def place_geocode(table: dict[str, dict[str, Place]], name: str, value: str) -> Place | None:
    """The mapping's place of geocode ``name=value`` (the name matched in any case)."""
    places = table.get(name)
    if places is None:
        folded = name.casefold()
        places = next((v for k, v in table.items() if k.casefold() == folded), None)
    return None if places is None else places.get(value)
