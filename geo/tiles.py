"""Coarse web-mercator tiles: the Kafka partition key, so one partition owns an area."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import shapely
from shapely.geometry import shape

if TYPE_CHECKING:
    from schemas.event import Event


def tile_of(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    """Slippy-map tile (z, x, y) holding the point."""
    lat = max(min(lat, 85.05112878), -85.05112878)
    n = 1 << zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return zoom, min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tile_key(lon: float, lat: float, zoom: int) -> bytes:
    z, x, y = tile_of(lon, lat, zoom)
    return f"{z}/{x}/{y}".encode()


def event_key(event: Event, zoom: int) -> bytes:
    """Kafka key of an event: the coarse tile of its point (of the centroid, for other
    geometries). Every producer (connectors, ``POST /v1/events``) keys events this way."""
    geom = event.geometry
    if geom.type == "Point":
        lon, lat = geom.coordinates[0], geom.coordinates[1]
    else:
        centroid = shapely.centroid(shape(geom.model_dump()))
        lon, lat = centroid.x, centroid.y
    return tile_key(lon, lat, zoom)
