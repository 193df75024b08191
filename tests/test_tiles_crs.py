"""Slippy-map tiles (the Kafka key) and conversions to WGS84, checked against independent maths
and against test vectors published by other implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Transformer

from geo.crs import bd09_to_gcj02, bd09_to_wgs84, gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02
from geo.tiles import tile_key, tile_of

CITY_HALL = (-122.4193, 37.7793)  # San Francisco City Hall, WGS84 lon/lat


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius): plenty for sub-metre checks."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


# --- tiles ---


def reference_tile(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    """The OSM wiki's form of the formula: y from ln(tan + sec), not asinh(tan)."""
    n = 2**zoom
    phi = math.radians(lat)
    x = math.floor((lon + 180.0) / 360.0 * n)
    y = math.floor((1.0 - math.log(math.tan(phi) + 1.0 / math.cos(phi)) / math.pi) / 2.0 * n)
    return zoom, x, y


def tile_bounds(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """West, south, east, north of a tile (inverse slippy-map formula)."""
    n = 2**zoom

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def test_city_hall_tile_at_zoom_12() -> None:
    assert reference_tile(*CITY_HALL, 12) == (12, 655, 1583)
    assert tile_of(*CITY_HALL, 12) == (12, 655, 1583)
    assert tile_key(*CITY_HALL, 12) == b"12/655/1583"


def test_tiles_agree_with_web_mercator_projection() -> None:
    # Independent route: project to EPSG:3857 metres with PROJ, then cut the square world.
    half = 20037508.342789244
    to_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    rng = np.random.default_rng(7)
    lons, lats = rng.uniform(-179.9, 179.9, 300), rng.uniform(-85.0, 85.0, 300)
    xs, ys = to_3857.transform(lons, lats)
    checked = 0
    for zoom in (0, 3, 8, 12, 16):
        n = 2**zoom
        fx, fy = (xs + half) / (2 * half) * n, (half - ys) / (2 * half) * n
        for lon, lat, tx, ty in zip(lons, lats, fx, fy, strict=True):
            if min(tx % 1, 1 - tx % 1, ty % 1, 1 - ty % 1) < 1e-6:
                continue  # too close to a tile edge for two float routes to agree
            assert tile_of(lon, lat, zoom) == (zoom, math.floor(tx), math.floor(ty)), (lon, lat)
            checked += 1
    assert checked > 1400


def test_points_in_one_tile_share_the_key() -> None:
    z, x, y = tile_of(*CITY_HALL, 12)
    west, south, east, north = tile_bounds(x, y, z)
    assert west <= CITY_HALL[0] < east and south < CITY_HALL[1] <= north
    rng = np.random.default_rng(12)
    eps = 1e-9
    inside = zip(
        rng.uniform(west + eps, east - eps, 200),
        rng.uniform(south + eps, north - eps, 200),
        strict=True,
    )
    assert {tile_key(lon, lat, z) for lon, lat in inside} == {b"12/655/1583"}
    mid_lon, mid_lat = (west + east) / 2, (south + north) / 2
    assert tile_of(west + eps, mid_lat, z) == (z, x, y)  # the west edge belongs to the tile
    assert tile_of(west - eps, mid_lat, z) == (z, x - 1, y)
    assert tile_of(east + eps, mid_lat, z) == (z, x + 1, y)
    assert tile_of(mid_lon, north + eps, z) == (z, x, y - 1)
    assert tile_of(mid_lon, south - eps, z) == (z, x, y + 1)


@pytest.mark.parametrize("zoom", [0, 1, 5, 12, 22])
def test_tiles_clamp_at_poles_and_antimeridian(zoom: int) -> None:
    last = 2**zoom - 1
    assert tile_of(0.0, 90.0, zoom)[2] == 0
    assert tile_of(0.0, 89.99, zoom)[2] == 0
    assert tile_of(0.0, -90.0, zoom)[2] == last
    assert tile_of(0.0, -89.99, zoom)[2] == last
    assert tile_of(-180.0, 0.0, zoom)[1] == 0
    assert tile_of(180.0, 0.0, zoom)[1] == last  # clamped into the last column, not wrapped
    assert tile_of(179.9999999, 0.0, zoom)[1] == last
    for lon in (-180.0, 180.0):
        for lat in (-90.0, 90.0):
            z, x, y = tile_of(lon, lat, zoom)
            assert z == zoom and 0 <= x <= last and 0 <= y <= last
            assert tile_key(lon, lat, zoom) == f"{zoom}/{x}/{y}".encode()


def test_zoom_zero_is_one_tile() -> None:
    assert {
        tile_of(lon, lat, 0) for lon in (-180, -1, 0, 179) for lat in (-90, -10, 0, 85, 90)
    } == {(0, 0, 0)}


# --- GCJ-02 / BD-09 ---

# googollee/eviltransform test vectors (also used by its many ports): WGS84 -> GCJ-02, lon/lat.
EVILTRANSFORM = [
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),  # Shanghai
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),  # Shenzhen
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),  # Beijing
]


@pytest.mark.parametrize(("wgs", "gcj"), EVILTRANSFORM, ids=["shanghai", "shenzhen", "beijing"])
def test_gcj02_matches_published_vectors(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    assert wgs84_to_gcj02(*wgs) == pytest.approx(gcj, abs=1e-9)
    assert metres(*gcj02_to_wgs84(*gcj), *wgs) < 0.5
    assert metres(*to_wgs84("GCJ-02")(*gcj), *wgs) < 0.5


def test_wandergis_wgs84_to_gcj02_vector() -> None:
    # wandergis/coordtransform README example (repeated in hutool's tests).
    assert wgs84_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.41024449916938, 39.91640428150164), abs=1e-9
    )


@pytest.mark.parametrize(
    "centre", [(116.397, 39.909), (121.4737, 31.2304)], ids=["beijing", "shanghai"]
)
def test_gcj02_round_trip_within_half_a_metre(centre: tuple[float, float]) -> None:
    for dlon in np.linspace(-0.3, 0.3, 7):
        for dlat in np.linspace(-0.3, 0.3, 7):
            lon, lat = centre[0] + dlon, centre[1] + dlat
            glon, glat = wgs84_to_gcj02(lon, lat)
            # The obfuscation really moves the point (hundreds of metres in these cities) ...
            assert 100 < metres(lon, lat, glon, glat) < 1000
            # ... and the inverse brings it back.
            assert metres(*gcj02_to_wgs84(glon, glat), lon, lat) < 0.5


@pytest.mark.parametrize(
    "point",
    [CITY_HALL, (139.767125, 35.681236), (-0.1276, 51.5072), (151.2093, -33.8688), (0.0, 0.0)],
    ids=["san_francisco", "tokyo", "london", "sydney", "null_island"],
)
def test_gcj02_leaves_points_outside_china_alone(point: tuple[float, float]) -> None:
    assert wgs84_to_gcj02(*point) == point
    assert gcj02_to_wgs84(*point) == point
    assert to_wgs84("gcj_02")(*point) == point


def test_bd09_to_gcj02_matches_published_vector() -> None:
    # wandergis/coordtransform README example; the same numbers are in hutool and other ports.
    assert bd09_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.39762729119315, 39.90865673957631), abs=1e-9
    )


@pytest.mark.parametrize(
    ("bd09", "wgs84"),
    [
        # dromara/hutool CoordinateUtilTest.bd09toWgs84Test (single-step inverse there).
        ((116.404, 39.915), (116.3913836995125, 39.907253214522164)),
        # hutool wgs84toBd09Test2 (values from tool.lu), read backwards.
        ((123.00636516028885, 45.00636909189589), (122.99395597, 44.99804071)),
    ],
    ids=["beijing", "heilongjiang"],
)
def test_bd09_to_wgs84_within_a_few_metres(
    bd09: tuple[float, float], wgs84: tuple[float, float]
) -> None:
    assert metres(*bd09_to_wgs84(*bd09), *wgs84) < 3.0
    assert metres(*to_wgs84("BD-09")(*bd09), *wgs84) < 3.0


# --- pyproj route ---


def utm_forward(lon: float, lat: float, zone: int) -> tuple[float, float]:
    """WGS84 -> UTM north (easting, northing) by Krüger's series (Karney 2011, to n^3).

    Written out here so the check does not lean on PROJ; millimetre-accurate near the
    central meridian.
    """
    a, f = 6_378_137.0, 1 / 298.257223563
    n = f / (2 - f)
    big_a = a / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    alpha = (n / 2 - 2 * n**2 / 3 + 5 * n**3 / 16, 13 * n**2 / 48 - 3 * n**3 / 5, 61 * n**3 / 240)
    phi, dlam = math.radians(lat), math.radians(lon - (6 * zone - 183))
    c = 2 * math.sqrt(n) / (1 + n)
    t = math.sinh(math.atanh(math.sin(phi)) - c * math.atanh(c * math.sin(phi)))
    xi, eta = math.atan2(t, math.cos(dlam)), math.atanh(math.sin(dlam) / math.sqrt(1 + t * t))
    k0 = 0.9996
    easting = 500_000 + k0 * big_a * (
        eta
        + sum(al * math.cos(2 * j * xi) * math.sinh(2 * j * eta) for j, al in enumerate(alpha, 1))
    )
    northing = (
        k0
        * big_a
        * (
            xi
            + sum(
                al * math.sin(2 * j * xi) * math.cosh(2 * j * eta) for j, al in enumerate(alpha, 1)
            )
        )
    )
    return easting, northing


@pytest.mark.parametrize(
    "point",
    [CITY_HALL, (-122.4783, 37.8199), (-122.5108, 37.7599), (-122.3893, 37.7786)],
    ids=["city_hall", "golden_gate_bridge", "ocean_beach", "oracle_park"],
)
def test_utm_zone_10n_to_wgs84_within_a_metre(point: tuple[float, float]) -> None:
    easting, northing = utm_forward(*point, zone=10)
    assert 540_000 < easting < 560_000 and 4_170_000 < northing < 4_190_000  # sanity: SF in 10N
    lon, lat = to_wgs84("EPSG:32610")(easting, northing)
    assert metres(lon, lat, *point) < 1.0


def test_wgs84_names_are_identity() -> None:
    for name in ("EPSG:4326", "wgs84", "OGC:CRS84"):
        assert to_wgs84(name)(*CITY_HALL) == CITY_HALL
