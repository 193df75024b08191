"""The fused picture as the running API serves it (incidents, risk cells, warnings, refuted
rumours, community outlines), read as one client, counted for the demo's summary and drawn as
an SVG map.

The map is plain SVG text written here from the API's GeoJSON (no plotting dependency): the
communities' outlines, the risk cells filled with their colour, warnings and refuted rumours
marked at their place. Longitude is scaled by cos(latitude) at the map's centre, which is
exact enough across one city.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
from shapely.geometry import shape

from hub.demo.clients import DemoClient, auth_headers
from hub.settings import Settings
from hub.stack.probes import api_url
from schemas.picture import INCIDENT_STATES as STATES
from schemas.picture import RISK_LEVELS as LEVELS
from schemas.picture import VERIFICATIONS

COLOURS = {"blue": "#60a5fa", "yellow": "#facc15", "orange": "#f97316", "red": "#dc2626"}
WIDTH = 1000.0  # px; the height follows the area's proportions
MARGIN = 20.0
TOP = 44.0  # room for the title above the map
PAGE = 1000  # the incidents' largest page


@dataclass(frozen=True)
class Picture:
    communities: list[dict[str, Any]]
    incidents: list[dict[str, Any]]  # every incident of the actual picture
    risk: list[dict[str, Any]]  # every stored cell, blue ones too
    warnings: list[dict[str, Any]]

    @property
    def refuted(self) -> list[dict[str, Any]]:
        return [i for i in self.incidents if i["properties"]["verification"] == "refuted"]

    @property
    def as_of(self) -> str | None:
        """The picture clock the risk was computed for (the latest cell's)."""
        return max((c["properties"]["as_of"] for c in self.risk), default=None)


# --- reading ----------------------------------------------------------------------------------


def all_features(
    http: httpx.Client, headers: dict[str, str], path: str, **params: Any
) -> list[dict[str, Any]]:
    """Every feature of a collection, following its ``next`` links."""
    features: list[dict[str, Any]] = []
    url: str | None = path
    query: dict[str, Any] | None = params
    while url is not None:
        page = http.get(url, params=query, headers=headers)
        page.raise_for_status()
        body = page.json()
        features += body["features"]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        query = None  # a next link carries the filters itself
    return features


def fetch(settings: Settings, client: DemoClient) -> Picture:
    """The picture as ``client`` sees it (the demo reads it as the analyst: the whole city)."""
    with httpx.Client(base_url=api_url(settings), timeout=60) as http:
        headers = auth_headers(http, client)
        return Picture(
            communities=all_features(http, headers, "/v1/communities"),
            incidents=all_features(http, headers, "/v1/incidents", limit=PAGE),
            risk=all_features(http, headers, "/v1/risk", min_level="blue", limit=10_000),
            warnings=all_features(http, headers, "/v1/warnings", limit=PAGE),
        )


# --- counting -----------------------------------------------------------------------------


def incident_counts(incidents: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = Counter((i["properties"]["verification"], i["properties"]["state"]) for i in incidents)
    return {
        "total": len(incidents),
        "by_verification": {v: sum(pairs[v, s] for s in STATES) for v in VERIFICATIONS},
        "by_state": {s: sum(pairs[v, s] for v in VERIFICATIONS) for s in STATES},
        "by_verification_and_state": {v: {s: pairs[v, s] for s in STATES} for v in VERIFICATIONS},
    }


def risk_counts(cells: list[dict[str, Any]]) -> dict[str, int]:
    levels = Counter(c["properties"]["level"] for c in cells)
    return {level: levels[level] for level in LEVELS}


def warning_items(warnings: list[dict[str, Any]]) -> dict[str, Any]:
    items = [
        {
            "id": w["id"],
            "event_type": w["properties"]["event_type"],
            "level": w["properties"]["level"],
            "verification": w["properties"]["verification"],
            "communities": w["properties"]["communities"],
            "neighbours": w["properties"]["neighbours"],
        }
        for w in warnings
    ]
    return {"count": len(items), "items": items}


def summary(picture: Picture) -> dict[str, Any]:
    """The keys the demo's JSON summary gains from the picture."""
    return {
        "incidents": incident_counts(picture.incidents),
        "risk": risk_counts(picture.risk),
        "warnings": warning_items(picture.warnings),
    }


# --- drawing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """lon/lat -> SVG pixels over a bounding box (y grows downwards)."""

    west: float
    north: float
    scale: float  # px per degree of latitude
    squash: float  # cos(latitude) at the centre
    height: float

    @classmethod
    def over(cls, bounds: tuple[float, float, float, float]) -> Projection:
        west, south, east, north = bounds
        squash = math.cos(math.radians((south + north) / 2))
        scale = (WIDTH - 2 * MARGIN) / ((east - west) * squash)
        return cls(west, north, scale, squash, (north - south) * scale + TOP + MARGIN)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        x = MARGIN + (lon - self.west) * self.squash * self.scale
        return round(x, 1), round(TOP + (self.north - lat) * self.scale, 1)


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    if geometry["type"] == "Polygon":
        return list(geometry["coordinates"])
    if geometry["type"] == "MultiPolygon":
        return [ring for polygon in geometry["coordinates"] for ring in polygon]
    return []


def path_data(geometry: dict[str, Any], proj: Projection) -> str:
    """An SVG path's ``d`` for a (Multi)Polygon: one closed subpath per ring, without the
    points that fall on the previous one's pixel (the outlines have thousands of vertices)."""
    parts = []
    for ring in _rings(geometry):
        points = [proj.xy(p[0], p[1]) for p in ring]
        kept = [xy for n, xy in enumerate(points) if n == 0 or xy != points[n - 1]]
        parts.append("M" + " ".join(f"{x},{y}" for x, y in kept) + "Z")
    return "".join(parts)


def _bounds(communities: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    lons, lats = [], []
    for c in communities:
        for ring in _rings(c["geometry"]):
            lons += [p[0] for p in ring]
            lats += [p[1] for p in ring]
    return min(lons), min(lats), max(lons), max(lats)


def _cells(picture: Picture, proj: Projection) -> list[str]:
    return [
        f'<path d="{path_data(c["geometry"], proj)}" fill="{COLOURS[c["properties"]["level"]]}" '
        f'fill-opacity="0.75"><title>{escape(c["id"])}: {c["properties"]["level"]} '
        f"(score {c['properties']['score']})</title></path>"
        for c in picture.risk
    ]


def _outlines(picture: Picture, proj: Projection) -> list[str]:
    out = []
    for c in picture.communities:
        name = escape(c["properties"]["name"])
        out.append(
            f'<path class="community" d="{path_data(c["geometry"], proj)}"><title>{name}</title>'
            "</path>"
        )
        x, y = _anchor(c["geometry"], proj)
        out.append(f'<text class="name" x="{x}" y="{y}">{name}</text>')
    return out


def _flagged(picture: Picture, proj: Projection) -> list[str]:
    """The outlines of the communities a warning is flagged to, drawn over the others."""
    names = {n for w in picture.warnings for n in w["properties"]["neighbours"]}
    return [
        f'<path class="flagged" d="{path_data(c["geometry"], proj)}"><title>'
        f"{escape(c['properties']['name'])}: a warning is flagged to it</title></path>"
        for c in picture.communities
        if c["properties"]["id"] in names
    ]


def _anchor(geometry: dict[str, Any], proj: Projection) -> tuple[float, float]:
    point = shape(geometry).representative_point()
    return proj.xy(point.x, point.y)


def _marker(feature: dict[str, Any], proj: Projection, css: str, label: str) -> str:
    """A ring at the feature's place, labelled on the side with room for the text."""
    x, y = _anchor(feature["geometry"], proj)
    text = escape(label)
    left = x > WIDTH * 0.6
    tx, anchor = (x - 12, "end") if left else (x + 12, "start")
    return (
        f'<g class="{css}"><circle cx="{x}" cy="{y}" r="9"/>'
        f'<text x="{tx}" y="{y + 4}" text-anchor="{anchor}">{text}</text>'
        f"<title>{escape(feature['id'])}: {text}</title></g>"
    )


def _markers(picture: Picture, proj: Projection) -> list[str]:
    warnings = [
        _marker(w, proj, "warning", _warning_label(w["properties"])) for w in picture.warnings
    ]
    refuted = [
        _marker(i, proj, "refuted", f"refuted: {i['properties']['event_type']} (a rumour)")
        for i in picture.refuted
    ]
    return warnings + refuted


def _warning_label(p: dict[str, Any]) -> str:
    level = f" ({p['level']})" if p["level"] else ""
    return f"{p['event_type']} warning{level}, flagged to {len(p['neighbours'])} neighbours"


STYLE = """
.community { fill: none; stroke: #374151; stroke-width: 0.8; }
.name { font: 7px sans-serif; fill: #374151; text-anchor: middle; }
.flagged { fill: none; stroke: #b91c1c; stroke-width: 1.6; stroke-dasharray: 6 3; }
.warning circle { fill: none; stroke: #b91c1c; stroke-width: 3; }
.refuted circle { fill: #e5e7eb; fill-opacity: 0.6; stroke: #111827; stroke-width: 2;
  stroke-dasharray: 3 2; }
.warning text, .refuted text { font: bold 11px sans-serif; fill: #111827;
  paint-order: stroke; stroke: #ffffff; stroke-width: 3px; }
.legend { font: 11px sans-serif; fill: #111827; }
.title { font: bold 13px sans-serif; fill: #111827; }
"""


def _legend(picture: Picture, proj: Projection) -> list[str]:
    counts = risk_counts(picture.risk)
    y0 = proj.height - MARGIN - 16 * (len(LEVELS) + 2)
    out = [f'<text class="legend" x="{MARGIN}" y="{y0}">risk per grid cell (H3)</text>']
    for n, level in enumerate(LEVELS, start=1):
        y = y0 + 16 * n
        out.append(
            f'<rect x="{MARGIN}" y="{y - 10}" width="12" height="12" fill="{COLOURS[level]}"/>'
            f'<text class="legend" x="{MARGIN + 18}" y="{y}">{level}: {counts[level]} cells</text>'
        )
    y = y0 + 16 * (len(LEVELS) + 1)
    out.append(
        f'<line class="flagged" x1="{MARGIN}" y1="{y - 4}" x2="{MARGIN + 12}" y2="{y - 4}"/>'
        f'<text class="legend" x="{MARGIN + 18}" y="{y}">a warning is flagged to it</text>'
    )
    return out


def svg(picture: Picture, title: str, subtitle: str) -> str:
    """The map as SVG text."""
    proj = Projection.over(_bounds(picture.communities))
    body = [
        f'<rect width="{WIDTH}" height="{proj.height:.0f}" fill="#f8fafc"/>',
        f'<text class="title" x="{MARGIN}" y="{MARGIN}">{escape(title)}</text>',
        f'<text class="legend" x="{MARGIN}" y="{MARGIN + 16}">{escape(subtitle)}</text>',
        *_cells(picture, proj),
        *_outlines(picture, proj),
        *_flagged(picture, proj),
        *_markers(picture, proj),
        *_legend(picture, proj),
    ]
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" '
            f'height="{proj.height:.0f}" viewBox="0 0 {WIDTH:.0f} {proj.height:.0f}">',
            f"<title>{escape(title)}</title>",
            f"<style>{STYLE}</style>",
            *body,
            "</svg>\n",
        ]
    )


def write_svg(picture: Picture, path: Path) -> Path:
    title = f"Community Risk Hub: the fused picture as of {picture.as_of or '-'}"
    subtitle = (
        "SFPD incident reports of December 2018 (real) + a flood and a rumour (synthetic "
        "readings and reports at real places); 41 SF Analysis Neighborhoods"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg(picture, title, subtitle), encoding="utf-8")
    return path
