"""Grid cells: import a community's own coded unit grid, load it for fusion, and store the H3
cells fusion generates where a community has none.

An import is all or nothing: a grid is one numbering, and half of it would assign events to a
numbering nobody uses. Invalid polygons are repaired in PostGIS (``ST_MakeValid``, keeping the
areal parts, as ``hub community import`` does with the same GEOS algorithm) and reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import shapely
from shapely.geometry import MultiPolygon, Polygon

from geo.geojson import GeoJSONError, polygonal, read_json, union_parts
from geo.grids import H3_PREFIX, GridIndex, h3_cell_polygon, h3_index
from hub.errors import InvalidInput

OUTSIDE_WARN_SHARE = 0.01  # a cell with more of its area outside its community is reported
MAX_PROBLEMS_SHOWN = 10


class GridImportError(InvalidInput, ValueError):
    """The grid cannot be imported as it is (the message says why)."""


@dataclass
class GridReport:
    community_id: str
    inserted: list[str] = field(default_factory=list)  # codes
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # in the stored grid, not in the file
    repaired: dict[str, str] = field(default_factory=dict)  # code -> what was wrong
    outside: dict[str, float] = field(default_factory=dict)  # code -> share outside community
    merged: dict[str, int] = field(default_factory=dict)  # code -> features unioned (2 or more)


@dataclass(frozen=True)
class GridFeature:
    code: str
    name: str | None
    wkb: bytes
    invalid: str | None  # why the polygon is invalid (repaired in PostGIS), None when valid
    parts_merged: int = 1  # features of the file unioned into this cell


# --- reading the file ------------------------------------------------------------------------


def read_grid(path: Path, code_property: str, name_property: str | None) -> list[GridFeature]:
    """Every code of the FeatureCollection as a cell (features sharing a code are parts of one
    cell, unioned: ``parts_merged`` says how many); GridImportError lists what is wrong."""
    try:
        doc = read_json(path)
    except GeoJSONError as exc:
        raise GridImportError(str(exc)) from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise GridImportError(f"{path}: expected a GeoJSON FeatureCollection, got {got!r}")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise GridImportError(f"{path}: the FeatureCollection has no features")
    parts: dict[str, list[_Part]] = {}
    problems: list[str] = []
    for n, feature in enumerate(features):
        try:
            part = _read_feature(feature, code_property, name_property)
        except GridImportError as exc:
            problems.append(f"feature #{n}: {exc}")
            continue
        parts.setdefault(part.code, []).append(part)
    if problems:
        raise GridImportError(_problems(path, problems))
    return [_cell(code, cell_parts) for code, cell_parts in parts.items()]


@dataclass(frozen=True)
class _Part:
    code: str
    name: str | None
    geom: Polygon | MultiPolygon


def _read_feature(feature: Any, code_property: str, name_property: str | None) -> _Part:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise GridImportError("not a GeoJSON Feature")
    props = feature.get("properties") or {}
    code = props.get(code_property)
    if code is None or str(code).strip() == "":
        raise GridImportError(f"no value in code property {code_property!r}")
    code = str(code).strip()
    try:
        geom = polygonal(feature.get("geometry"))
    except GeoJSONError as exc:
        raise GridImportError(f"cell {code!r}: {exc}") from None
    if geom.is_empty:
        raise GridImportError(f"cell {code!r}: empty geometry")
    name = props.get(name_property) if name_property is not None else None
    return _Part(code, None if name is None else str(name), geom)


def _cell(code: str, parts: list[_Part]) -> GridFeature:
    """One part: as it is (repaired in PostGIS when invalid). Several: each repaired (the same
    GEOS make_valid as PostGIS), then unioned here; the first name given wins."""
    name = next((p.name for p in parts if p.name is not None), None)
    if len(parts) == 1:
        geom = parts[0].geom
        invalid = None if geom.is_valid else shapely.is_valid_reason(geom)
        return GridFeature(code, name, geom.wkb, invalid)
    union, repaired = union_parts([p.geom for p in parts])
    wkb = (union if union is not None else MultiPolygon()).wkb  # empty: refused when stored
    return GridFeature(code, name, wkb, repaired, len(parts))


def _problems(path: Path, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    return f"{path}: {len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(shown) + tail


# --- storing ---------------------------------------------------------------------------------

_STAGE = """
DROP TABLE IF EXISTS pg_temp.grid_stage;
CREATE TEMP TABLE grid_stage (
    code text PRIMARY KEY, name text, geom geometry NOT NULL, invalid text
) ON COMMIT DROP
"""

# Repaired the way community import repairs: keep the areal parts of what make_valid returns.
_REPAIR = """
UPDATE grid_stage SET geom = ST_Multi(CASE WHEN invalid IS NULL THEN geom
    ELSE ST_CollectionExtract(ST_MakeValid(geom), 3) END)
"""

# Shares of planar areas in degrees: the cos(latitude) scale cancels within a cell.
_OUTSIDE = """
SELECT s.code, CASE WHEN ST_CoveredBy(s.geom, c.geom) THEN 0.0
    ELSE 1.0 - ST_Area(ST_Intersection(s.geom, c.geom)) / ST_Area(s.geom) END
FROM grid_stage s JOIN community c ON c.id = %(community)s
WHERE NOT ST_IsEmpty(s.geom)
"""

_DELETE = """
DELETE FROM grid_cell
WHERE community_id = %(community)s AND source = 'imported'
    AND code NOT IN (SELECT code FROM grid_stage)
RETURNING code
"""

_UPSERT = """
INSERT INTO grid_cell (id, community_id, code, source, name, geom, repaired, imported_at)
SELECT %(community)s || '/' || code, %(community)s, code, 'imported', name, geom,
    invalid IS NOT NULL, now()
FROM grid_stage ORDER BY code
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
    repaired = EXCLUDED.repaired, imported_at = now()
RETURNING code, (xmax = 0) AS inserted
"""


def import_grid(
    conn: psycopg.Connection,
    path: Path,
    community_id: str,
    code_property: str,
    name_property: str | None = None,
) -> GridReport:
    """Replace ``community_id``'s imported grid with the cells of ``path``, in one transaction:
    cells the file no longer has are deleted, the others inserted or updated."""
    cells = read_grid(path, code_property, name_property)
    report = GridReport(community_id)
    with conn.transaction(), conn.cursor() as cur:
        _lock_community(cur, community_id)
        cur.execute(_STAGE)
        cur.executemany(
            "INSERT INTO grid_stage VALUES (%s, %s, ST_GeomFromWKB(%s, 4326), %s)",
            [(c.code, c.name, c.wkb, c.invalid) for c in cells],
        )
        cur.execute(_REPAIR)
        empty = [r[0] for r in cur.execute("SELECT code FROM grid_stage WHERE ST_IsEmpty(geom)")]
        if empty:
            raise GridImportError(f"{path}: no area left after repair: cells {', '.join(empty)}")
        params = {"community": community_id}
        shares = cur.execute(_OUTSIDE, params).fetchall()
        report.outside = {code: share for code, share in shares if share > OUTSIDE_WARN_SHARE}
        report.deleted = sorted(r[0] for r in cur.execute(_DELETE, params))
        for code, inserted in cur.execute(_UPSERT, params).fetchall():
            (report.inserted if inserted else report.updated).append(code)
    report.repaired = {c.code: c.invalid for c in cells if c.invalid is not None}
    report.merged = {c.code: c.parts_merged for c in cells if c.parts_merged > 1}
    return report


def _lock_community(cur: psycopg.Cursor, community_id: str) -> None:
    """Check the community exists and serialise imports of its grid. NO KEY UPDATE does not
    block fusion, whose event inserts only take KEY SHARE on the community they name."""
    if f"{community_id}/" == H3_PREFIX:  # its cells' ids would be those of generated cells
        raise GridImportError(f"community {community_id!r} cannot have an imported grid")
    row = cur.execute(
        "SELECT 1 FROM community WHERE id = %s FOR NO KEY UPDATE", (community_id,)
    ).fetchone()
    if row is None:
        raise GridImportError(
            f"community {community_id!r} is not registered (import it first: hub community import)"
        )


# --- fusion's side ---------------------------------------------------------------------------


def grid_version(conn: psycopg.Connection) -> tuple[int, datetime | None]:
    """Changes whenever an imported grid does (an import stamps every cell it writes)."""
    row = conn.execute(
        "SELECT count(*), max(imported_at) FROM grid_cell WHERE source = 'imported'"
    ).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def load_grid_index(conn: psycopg.Connection) -> GridIndex:
    """Every community's imported cells, ready for point assignment."""
    rows = conn.execute(
        "SELECT community_id, id, ST_AsBinary(geom) FROM grid_cell"
        " WHERE source = 'imported' ORDER BY community_id, id"
    ).fetchall()
    return GridIndex.build([(c, i, shapely.from_wkb(g)) for c, i, g in rows])


_ENSURE_H3 = """
INSERT INTO grid_cell (id, code, source, geom)
SELECT id, code, 'h3', ST_GeomFromWKB(wkb, 4326)
FROM unnest(%s::text[], %s::text[], %s::bytea[]) AS t (id, code, wkb)
ON CONFLICT (id) DO NOTHING
"""


def ensure_h3_cells(conn: psycopg.Connection, ids: Iterable[str]) -> None:
    """Store the polygons of these ``h3/<index>`` cells unless stored already; in the caller's
    transaction (fusion: the batch that first names them)."""
    indexes = sorted({h3_index(i) for i in ids})
    if not indexes:
        return
    conn.execute(
        _ENSURE_H3,
        (
            [f"h3/{h}" for h in indexes],
            indexes,
            [h3_cell_polygon(h).wkb for h in indexes],
        ),
    )


# --- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridSummary:
    community_id: str | None  # None: the generated H3 cells
    cells: int
    repaired: int
    imported_at: datetime | None


@dataclass(frozen=True)
class CellRow:
    id: str
    code: str
    name: str | None
    area_m2: float
    repaired: bool
    imported_at: datetime


def grid_summaries(conn: psycopg.Connection) -> list[GridSummary]:
    """One row per community with a grid, then one for the generated H3 cells."""
    rows = conn.execute(
        "SELECT community_id, count(*), count(*) FILTER (WHERE repaired), max(imported_at)"
        " FROM grid_cell GROUP BY community_id ORDER BY community_id NULLS LAST"
    ).fetchall()
    return [GridSummary(c, int(n), int(r), t) for c, n, r, t in rows]


def community_cells(conn: psycopg.Connection, community_id: str) -> list[CellRow]:
    rows = conn.execute(
        "SELECT id, code, name, ST_Area(geom::geography), repaired, imported_at FROM grid_cell"
        " WHERE community_id = %s ORDER BY code",
        (community_id,),
    ).fetchall()
    return [CellRow(*row) for row in rows]
