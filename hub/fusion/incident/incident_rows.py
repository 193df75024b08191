"""The incident rows: each touched incident's summary (``summaries.summarise``) with its
geometry, written in bulk (brand-new incidents of points by COPY, the others staged and
upserted, hulls with areas by PostGIS)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import psycopg
import shapely

from hub.fusion.incident.summaries import summarise
from hub.fusion.rules import Rules
from hub.store.frames import copy_frame


def incident_rows(members: pl.DataFrame, arrived: set[str], rules: Rules) -> pl.DataFrame:
    """``summarise`` of the members, with whether all of an incident's members are 2D points
    (``plain_point``) and all arrived in this batch (``new``: the incident cannot exist), and
    the geometry of those of points (``geom``)."""
    flags = members.group_by("incident").agg(
        pl.col("plain_point").all(), pl.col("event_id").is_in(list(arrived)).all().alias("new")
    )
    rows = summarise(members, rules).join(flags, on="incident", maintain_order="left")
    rows = rows.join(for_later_stages(members), on="incident", how="left", maintain_order="left")
    return rows.with_columns(
        pl.col("alerts").fill_null(0),
        *(pl.col(c).fill_null(pl.lit([], rows.schema[c])) for c in _CELL_COLUMNS),
        hulls(rows),
    )


_CELL_COLUMNS = ("grid_cells", "cell_communities", "cell_reports")


def for_later_stages(members: pl.DataFrame) -> pl.DataFrame:
    """What the warning-flag and risk stages read of an incident's live members, per incident:
    ``alerts`` (members of kind alert), and per grid cell and community (sorted, nulls last)
    how many members lie there (``grid_cells``, ``cell_communities``, ``cell_reports``)."""
    live = members.filter(~pl.col("cancelled"))
    alerts = live.group_by("incident").agg((pl.col("kind") == "alert").sum().alias("alerts"))
    cells = (
        live.filter(pl.col("grid_cell").is_not_null())
        .group_by("incident", "grid_cell", "community_id")
        .agg(pl.len().cast(pl.Int32).alias("cell_reports"))
        .sort("incident", "grid_cell", "community_id", nulls_last=True)
        .group_by("incident", maintain_order=True)
        .agg(
            pl.col("grid_cell").alias("grid_cells"),
            pl.col("community_id").alias("cell_communities"),
            "cell_reports",
        )
    )
    return alerts.join(cells, on="incident", how="left")


CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS incident_stage (
    id uuid, status text, category text, event_type text, severity text, certainty text,
    verification text, sources int, reports int, communities text[], first_observed_at
    timestamptz, last_observed_at timestamptz, alerts int, grid_cells text[],
    cell_communities text[], cell_reports int[], members uuid[], geom geometry
) ON COMMIT DELETE ROWS
"""

_UPSERT = """
INSERT INTO incident AS i (id, status, state, category, event_type, severity, certainty,
    verification, sources, reports, communities, first_observed_at, last_observed_at, alerts,
    grid_cells, cell_communities, cell_reports, geom, updated_seq)
SELECT s.id, s.status, 'open', s.category, s.event_type, s.severity, s.certainty,
    s.verification, s.sources, s.reports, s.communities, s.first_observed_at,
    s.last_observed_at, s.alerts, s.grid_cells, s.cell_communities, s.cell_reports,
    -- members with areas (the points' hull came from Python): one report, its geometry; more,
    -- the hull of them all (a line when all lie on one). coalesce evaluates no more than it
    -- needs (a LEFT JOIN LATERAL ... ON s.geom IS NULL ran the subqueries for every row).
    coalesce(s.geom, CASE WHEN cardinality(s.members) = 1
        THEN (SELECT e.geom FROM event e WHERE e.event_id = s.members[1])
        ELSE (SELECT ST_ConvexHull(ST_Collect(e.geom)) FROM event e
              WHERE e.event_id = ANY(s.members)) END),
    nextval('incident_update_seq')
FROM incident_stage s
ORDER BY s.id
ON CONFLICT (id) DO UPDATE SET
    state = 'open', category = EXCLUDED.category, event_type = EXCLUDED.event_type,
    severity = EXCLUDED.severity, certainty = EXCLUDED.certainty,
    verification = CASE WHEN i.decided_at IS NULL THEN EXCLUDED.verification
                        ELSE i.verification END,
    sources = EXCLUDED.sources, reports = EXCLUDED.reports,
    communities = EXCLUDED.communities, first_observed_at = EXCLUDED.first_observed_at,
    last_observed_at = EXCLUDED.last_observed_at, alerts = EXCLUDED.alerts,
    grid_cells = EXCLUDED.grid_cells, cell_communities = EXCLUDED.cell_communities,
    cell_reports = EXCLUDED.cell_reports, geom = EXCLUDED.geom,
    updated_seq = EXCLUDED.updated_seq
RETURNING (xmax = 0) AS created
"""

_INCIDENT_COLUMNS = (
    "id, status, category, event_type, severity, certainty, verification, sources, reports,"
    " communities, first_observed_at, last_observed_at, alerts, grid_cells, cell_communities,"
    " cell_reports"
)
# updated_seq comes from the column's default (the sequence), state 'open' likewise.
_COPY_INCIDENTS = f"COPY incident ({_INCIDENT_COLUMNS}, geom) FROM STDIN (FORMAT csv)"

_COPY_STAGE = f"COPY incident_stage ({_INCIDENT_COLUMNS}, members, geom) FROM STDIN (FORMAT csv)"

_ROW_FIELDS: list[pl.Expr | str] = [
    pl.col("incident").alias("id"), "status", "category", "event_type", "severity", "certainty",
    "verification", "sources", "reports", "communities", "first_observed_at", "last_observed_at",
    "alerts", "grid_cells", "cell_communities", "cell_reports",
]  # fmt: skip


def hulls(rows: pl.DataFrame) -> pl.Series:
    """Each incident's geometry as hex WKB when its members are all 2D points (their point,
    or the convex hull of their distinct points, as ST_ConvexHull gives it), else null
    (PostGIS builds it). Repeats of one point count once: a storm's repeated reports would
    otherwise make a hull of thousands of copies of one point."""
    out = np.full(rows.height, None, dtype=object)
    points = (
        rows.select(pl.int_range(pl.len()).alias("k"), "lon", "lat", "plain_point")
        .filter("plain_point")
        .explode("lon", "lat")
        .unique(["k", "lon", "lat"], maintain_order=True)
    )
    if points.height == 0:
        return pl.Series("geom", out.tolist(), dtype=pl.String)
    distinct = points.group_by("k", maintain_order=True).len()
    one = distinct.filter(pl.col("len") == 1)["k"]
    if one.len():
        single = points.filter(pl.col("k").is_in(one.implode()))
        out[single["k"].to_numpy()] = point_wkb(single["lon"], single["lat"])
    many = points.filter(~pl.col("k").is_in(one.implode()))
    if many.height:
        ks, which = np.unique(many["k"].to_numpy(), return_inverse=True)
        xy = np.column_stack([many["lon"].to_numpy(), many["lat"].to_numpy()])
        out[ks] = shapely.to_wkb(
            shapely.convex_hull(shapely.multipoints(xy, indices=which)), hex=True
        )
    # A list, not the object array: polars cannot cast an object array whose first value is
    # None (an incident of polygons, e.g. CAP alerts, before one of points) to String.
    return pl.Series("geom", out.tolist(), dtype=pl.String)


def point_wkb(lon: pl.Series, lat: pl.Series) -> list[str]:
    """Hex WKB of 2D points, laid out in bulk (what shapely writes for a point, without a
    geometry object per point): little-endian, type 1, x, y."""
    n = lon.len()
    wkb = np.empty((n, 21), dtype=np.uint8)
    wkb[:, 0] = 1
    wkb[:, 1:5] = np.frombuffer(np.uint32(1).astype("<u4").tobytes(), dtype=np.uint8)
    wkb[:, 5:13] = lon.to_numpy().astype("<f8").view(np.uint8).reshape(n, 8)
    wkb[:, 13:21] = lat.to_numpy().astype("<f8").view(np.uint8).reshape(n, 8)
    text = wkb.tobytes().hex()
    return [text[k : k + 42] for k in range(0, len(text), 42)]


def write_rows(conn: psycopg.Connection[Any], rows: pl.DataFrame) -> int:
    """The incident rows (``incident_rows``): brand-new ones of plain points by COPY
    straight into the table (no conflict is possible), the others staged by COPY and upserted
    in one statement (hulls with areas by PostGIS). Returns how many incidents are new."""
    straight = pl.col("new") & pl.col("geom").is_not_null()
    direct, staged = rows.filter(straight), rows.filter(~straight)
    with conn.cursor() as cur:
        copy_frame(cur, _COPY_INCIDENTS, direct.select(*_ROW_FIELDS, "geom"))
        if staged.height == 0:
            return direct.height
        members = pl.when(pl.col("geom").is_null()).then("members")  # only PostGIS's hulls
        copy_frame(cur, _COPY_STAGE, staged.select(*_ROW_FIELDS, members, "geom"))
        created = cur.execute(_UPSERT).fetchall()
        cur.execute("TRUNCATE incident_stage")  # a second batch in one transaction starts empty
    return direct.height + sum(1 for (new,) in created if new)
