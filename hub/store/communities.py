"""Community polygons: import from GeoJSON (repairing invalid rings) and load for assignment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from geo.assign import CommunityIndex
from hub.errors import InvalidInput


class CommunityImportError(InvalidInput, ValueError):
    """The file cannot be imported as it is (the message says why)."""


@dataclass
class ImportReport:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    repaired: dict[str, str] = field(default_factory=dict)  # id -> what was wrong
    skipped: dict[str, str] = field(default_factory=dict)  # feature label -> reason


@dataclass(frozen=True)
class CommunityRow:
    id: str
    name: str
    geom: MultiPolygon
    repaired: str | None
    properties: dict[str, Any]


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon | None:
    if isinstance(geom, MultiPolygon | Polygon):
        parts = list(getattr(geom, "geoms", [geom]))
    else:  # a GeometryCollection from make_valid: keep its areal parts
        parts = []
        for g in getattr(geom, "geoms", []):
            parts.extend(getattr(g, "geoms", [g]) if isinstance(g, MultiPolygon) else [g])
        parts = [g for g in parts if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(parts) if parts else None


def read_communities(
    path: Path, id_field: str, name_field: str
) -> tuple[list[CommunityRow], ImportReport]:
    """Parse a GeoJSON FeatureCollection of (multi)polygons into community rows."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommunityImportError(f"{path}: not a readable GeoJSON file ({exc})") from exc
    if doc.get("type") != "FeatureCollection":
        raise CommunityImportError(f"{path}: expected a FeatureCollection, got {doc.get('type')!r}")
    report, rows, seen = ImportReport(), [], set()
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
            geom = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.skipped[f"{label} ({cid})"] = f"unreadable geometry: {exc}"
            continue
        if not isinstance(geom, Polygon | MultiPolygon):
            report.skipped[f"{label} ({cid})"] = f"{geom.geom_type} is not a (multi)polygon"
            continue
        repaired = None
        if not geom.is_valid:
            repaired = shapely.is_valid_reason(geom)
            geom = shapely.make_valid(geom)
        multi = _as_multipolygon(geom)
        if multi is None:
            report.skipped[f"{label} ({cid})"] = "no area left after repair"
            continue
        if repaired:
            report.repaired[cid] = repaired
        seen.add(cid)
        name = str(props.get(name_field) or cid)
        rows.append(CommunityRow(cid, name, multi, repaired, props))
    return rows, report


_UPSERT = """
INSERT INTO community (id, name, geom, repaired, properties, imported_at)
VALUES (%s, %s, ST_GeomFromWKB(%s, 4326), %s, %s::jsonb, now())
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
    repaired = EXCLUDED.repaired, properties = EXCLUDED.properties, imported_at = now()
RETURNING (xmax = 0) AS inserted
"""


def upsert_communities(
    conn: psycopg.Connection, rows: list[CommunityRow], report: ImportReport
) -> None:
    """Insert or update (never duplicate) the rows, in the caller's transaction."""
    with conn.cursor() as cur:
        for row in rows:
            props = orjson.dumps(row.properties, default=str).decode()
            cur.execute(_UPSERT, (row.id, row.name, row.geom.wkb, row.repaired is not None, props))
            result = cur.fetchone()
            (report.inserted if result and result[0] else report.updated).append(row.id)


def import_communities(
    conn: psycopg.Connection, path: Path, id_field: str, name_field: str
) -> ImportReport:
    rows, report = read_communities(path, id_field, name_field)
    with conn.transaction():
        upsert_communities(conn, rows, report)
    return report


def load_index(conn: psycopg.Connection) -> CommunityIndex:
    """All communities, ready for point assignment."""
    rows = conn.execute("SELECT id, ST_AsBinary(geom) FROM community ORDER BY id").fetchall()
    return CommunityIndex.build([r[0] for r in rows], [shapely.from_wkb(r[1]) for r in rows])
