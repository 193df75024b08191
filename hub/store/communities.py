"""Community polygons: import from GeoJSON (read and repaired by ``geo.geojson``) and load for
assignment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import shapely

from geo.assign import CommunityIndex
from geo.geojson import CommunityFeature, ReadReport, read_communities


@dataclass
class ImportReport(ReadReport):
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


_UPSERT = """
INSERT INTO community (id, name, geom, repaired, properties, imported_at)
VALUES (%s, %s, ST_GeomFromWKB(%s, 4326), %s, %s::jsonb, now())
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
    repaired = EXCLUDED.repaired, properties = EXCLUDED.properties, imported_at = now()
RETURNING (xmax = 0) AS inserted
"""


def upsert_communities(
    conn: psycopg.Connection, rows: list[CommunityFeature], report: ImportReport
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
    """Raises ``geo.geojson.GeoJSONError`` when the file cannot be read."""
    rows, read = read_communities(path, id_field, name_field)
    report = ImportReport(repaired=read.repaired, skipped=read.skipped, merged=read.merged)
    with conn.transaction():
        upsert_communities(conn, rows, report)
    return report


def load_index(conn: psycopg.Connection, snap_m: float = 0.0) -> CommunityIndex:
    """All communities, ready for point assignment (snapping points within ``snap_m`` metres
    of one to the nearest)."""
    rows = conn.execute("SELECT id, ST_AsBinary(geom) FROM community ORDER BY id").fetchall()
    ids, geoms = [r[0] for r in rows], [shapely.from_wkb(r[1]) for r in rows]
    return CommunityIndex.build(ids, geoms, snap_m)
