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
    merged: dict[str, int] = field(default_factory=dict)  # id -> parts unioned (2 or more)


@dataclass(frozen=True)
class CommunityFeature:
    id: str
    name: str
    geom: MultiPolygon
    repaired: str | None  # why the polygon was invalid; None when it was valid
    properties: dict[str, Any]


@dataclass
class _Parts:
    """The features of one id: real sources publish an area with islands or exclaves as
    several features sharing its id."""

    name: str | None
    properties: dict[str, Any]
    geoms: list[Polygon | MultiPolygon] = field(default_factory=list)


def read_communities(
    path: Path, id_field: str, name_field: str
) -> tuple[list[CommunityFeature], ReadReport]:
    """Parse a GeoJSON FeatureCollection of (multi)polygons into communities. Features that
    share an id are parts of one community: each part is repaired, then they are unioned (the
    name and properties of the first). Features without an id and geometries with no area
    are skipped with the reason."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise GeoJSONError(f"{path}: expected a FeatureCollection, got {got!r}")
    report, by_id = ReadReport(), _group_by_id(doc.get("features") or [], id_field, name_field)
    features = []
    for cid, group in by_id.items():
        if isinstance(group, str):
            report.skipped[cid] = group
            continue
        multi, repaired = union_parts(group.geoms)
        if multi is None:
            report.skipped[cid] = "no area left after repair"
            continue
        if repaired:
            report.repaired[cid] = repaired
        if len(group.geoms) > 1:
            report.merged[cid] = len(group.geoms)
        name = str(group.name or cid)
        features.append(CommunityFeature(cid, name, multi, repaired, group.properties))
    return features, report


def _group_by_id(features: list[Any], id_field: str, name_field: str) -> dict[str, _Parts | str]:
    """Feature id -> its parts, in file order; a label -> why it was skipped for features
    that have no id or no polygon (the other parts of their id are kept)."""
    groups: dict[str, _Parts | str] = {}
    for n, feature in enumerate(features):
        props = (feature.get("properties") if isinstance(feature, dict) else None) or {}
        cid = props.get(id_field)
        if cid is None or str(cid).strip() == "":
            groups[f"feature #{n}"] = f"no value in id field {id_field!r}"
            continue
        cid = str(cid)
        try:
            geom = polygonal(feature.get("geometry"))
        except GeoJSONError as exc:
            groups[f"feature #{n} ({cid})"] = str(exc)
            continue
        group = groups.setdefault(cid, _Parts(props.get(name_field), props))
        if isinstance(group, _Parts):
            group.name = group.name or props.get(name_field)
            group.geoms.append(geom)
    return groups


def union_parts(
    parts: list[Polygon | MultiPolygon],
) -> tuple[MultiPolygon | None, str | None]:
    """(the union of the repaired parts as one valid multipolygon, why parts were invalid or
    None); None when no part has any area. Shared edges between parts dissolve."""
    repaired, areal = [], []
    for n, geom in enumerate(parts, start=1):
        multi, why = repair_polygon(geom)
        if why:
            repaired.append(why if len(parts) == 1 else f"part {n}: {why}")
        if multi is not None:
            areal.append(multi)
    if not areal:
        return None, "; ".join(repaired) or None
    merged = areal[0] if len(areal) == 1 else _as_multipolygon(shapely.union_all(areal))
    return merged, "; ".join(repaired) or None


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


def read_community_index(path: Path, id_field: str, snap_m: float = 0.0) -> CommunityIndex:
    """The communities of a GeoJSON file, ready for point assignment (ids from ``id_field``;
    points within ``snap_m`` metres of one snap to the nearest)."""
    features, _ = read_communities(path, id_field, id_field)
    return CommunityIndex.build([f.id for f in features], [f.geom for f in features], snap_m)


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
