"""Community polygons from a GeoJSON file: read, check and repair (invalid rings go through
make_valid, keeping the areal parts).

Shared by the hub's ``hub community import`` (which stores the polygons) and connectors (which
may assign communities locally from the same file, far from the hub's database).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from geo.assign import CommunityIndex
from hub.errors import InvalidInput


class GeoJSONError(InvalidInput, ValueError):
    """The file cannot be used as it is (the message says why)."""


@dataclass
class ReadReport:
    repaired: dict[str, str] = field(default_factory=dict)  # id -> what was wrong
    skipped: dict[str, str] = field(default_factory=dict)  # feature label -> reason


@dataclass(frozen=True)
class CommunityFeature:
    id: str
    name: str
    geom: MultiPolygon
    repaired: str | None  # why the polygon was invalid; None when it was valid
    properties: dict[str, Any]


def read_communities(
    path: Path, id_field: str, name_field: str
) -> tuple[list[CommunityFeature], ReadReport]:
    """Parse a GeoJSON FeatureCollection of (multi)polygons into communities; features without
    an id, repeated ids and geometries with no area are skipped with the reason."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise GeoJSONError(f"{path}: expected a FeatureCollection, got {got!r}")
    report, features, seen = ReadReport(), [], set()
    for n, feature in enumerate(doc.get("features") or []):
        props = feature.get("properties") or {}
        label = f"feature #{n}"
        cid = props.get(id_field)
        if cid is None or str(cid).strip() == "":
            report.skipped[label] = f"no value in id field {id_field!r}"
            continue
        cid = str(cid)
        if cid in seen:
            report.skipped[f"{label} ({cid})"] = "duplicate id in file"
            continue
        try:
            geom = polygonal(feature.get("geometry"))
        except GeoJSONError as exc:
            report.skipped[f"{label} ({cid})"] = str(exc)
            continue
        multi, repaired = repair_polygon(geom)
        if multi is None:
            report.skipped[f"{label} ({cid})"] = "no area left after repair"
            continue
        if repaired:
            report.repaired[cid] = repaired
        seen.add(cid)
        name = str(props.get(name_field) or cid)
        features.append(CommunityFeature(cid, name, multi, repaired, props))
    return features, report


def read_json(path: Path) -> Any:
    """The JSON document of a GeoJSON file; GeoJSONError when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeoJSONError(f"{path}: not a readable GeoJSON file ({exc})") from exc


def polygonal(geometry: Any) -> Polygon | MultiPolygon:
    """A GeoJSON geometry object as a shapely (multi)polygon, not yet repaired; GeoJSONError
    says why it is not one."""
    try:
        geom = shape(geometry)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise GeoJSONError(f"unreadable geometry ({exc})") from None
    if not isinstance(geom, Polygon | MultiPolygon):
        raise GeoJSONError(f"{geom.geom_type} is not a (multi)polygon")
    return geom


def read_community_index(path: Path, id_field: str) -> CommunityIndex:
    """The communities of a GeoJSON file, ready for point assignment (ids from ``id_field``)."""
    features, _ = read_communities(path, id_field, id_field)
    return CommunityIndex.build([f.id for f in features], [f.geom for f in features])


def repair_polygon(geom: Polygon | MultiPolygon) -> tuple[MultiPolygon | None, str | None]:
    """(the valid multipolygon, why the input was invalid or None); the multipolygon is None
    when nothing areal is left after the repair."""
    repaired = None
    repairable: BaseGeometry = geom
    if not geom.is_valid:
        repaired = shapely.is_valid_reason(geom)
        repairable = shapely.make_valid(geom)
    return _as_multipolygon(repairable), repaired


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon | None:
    """The areal parts of ``geom`` (a GeometryCollection from make_valid may hold lines and
    points too) as one MultiPolygon, or None when there are none."""
    if isinstance(geom, MultiPolygon | Polygon):
        parts = list(getattr(geom, "geoms", [geom]))
    else:
        parts = []
        for g in getattr(geom, "geoms", []):
            parts.extend(getattr(g, "geoms", [g]) if isinstance(g, MultiPolygon) else [g])
        parts = [g for g in parts if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(parts) if parts else None
