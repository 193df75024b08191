"""Coarse web-mercator tiles: the Kafka partition key, so one partition owns an area."""

from __future__ import annotations

import math


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
