"""The reports as the incident stage reads them: from the batch's frame when it can, else from
the store, as frames of ``links.REPORT_SCHEMA`` with the columns the incident rows need; and the
queries that find the stored reports a batch may touch (``model``'s incremental invariant).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import polars as pl

from hub.fusion.decode import observed_instant
from hub.fusion.incident.links import REPORT_SCHEMA
from hub.fusion.stages import Batch
from schemas.picture import CERTAINTY_ORDER, PICTURES, SEVERITY_ORDER

log = logging.getLogger(__name__)

REPORT_KINDS = ("incident", "alert")
ROW_KINDS = (*REPORT_KINDS, "cancel", "verification")

# The columns of an event as the stage reads it, from the batch or from the store.
ROW_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **{c: REPORT_SCHEMA[c] for c in ("event_id", "event_type", "status", "observed_at")},
    **{c: REPORT_SCHEMA[c] for c in ("lon", "lat", "community_id")},
    **{c: pl.String for c in ("reporter", "source_system", "source_connector")},
    **{c: REPORT_SCHEMA[c] for c in ("severity", "certainty", "refs")},
    "category": pl.String,
    "kind": pl.String,
    "plain_point": pl.Boolean,  # a 2D point: its representative point is itself
    "grid_cell": pl.String,
}
NEW_SCHEMA = {**ROW_SCHEMA, "properties": pl.String}
STORED_SCHEMA = {
    **ROW_SCHEMA,
    "incident_id": pl.String,
    "pinned": pl.Boolean,
    "component_id": pl.String,
}

# In the order of ROW_SCHEMA.
_EVENT_POINT = "ST_X(ST_PointOnSurface(e.geom)) AS lon, ST_Y(ST_PointOnSurface(e.geom)) AS lat"
_ROW_COLUMNS = f"""
    e.event_id::text, e.event_type, e.status, e.observed_at,
    {_EVENT_POINT},
    e.community_id, e.reporter, e.source_system, e.source_connector, e.severity, e.certainty,
    e.refs::text[], e.category, e.kind,
    GeometryType(e.geom) = 'POINT' AND ST_NDims(e.geom) = 2 AS plain_point, e.grid_cell
"""

NEW_ROWS = f"""
SELECT {_ROW_COLUMNS},
    CASE WHEN e.kind = 'verification' THEN e.properties::text END  -- only they need it
FROM fusion_new n JOIN event e ON e.event_id = n.event_id
WHERE e.kind = ANY(%(kinds)s) OR e.kind IN ('cancel', 'verification')
ORDER BY e.seq
"""


# The neighbourhoods of the stored, live, unpinned reports inside the batch's spans (time and
# box): per span one range scan of incident_report's reach index, which covers the columns read
# (LATERAL: a plan that cannot turn into a join of whole tables, whatever the statistics say).
IN_SPANS = """
SELECT r.component_id::text
FROM unnest(%(status)s::text[], %(event_type)s::text[], %(start)s::timestamptz[],
            %(end)s::timestamptz[], %(west)s::float8[], %(south)s::float8[],
            %(east)s::float8[], %(north)s::float8[]) AS s(status, event_type, t0, t1, w, s, e, n)
CROSS JOIN LATERAL (
    SELECT component_id FROM incident_report r
    WHERE r.status = s.status AND r.event_type = s.event_type
        AND r.observed_at BETWEEN s.t0 AND s.t1 AND NOT r.cancelled AND NOT r.pinned
        AND r.lon BETWEEN s.w AND s.e AND r.lat BETWEEN s.s AND s.n
    OFFSET 0  -- a fence: kept as a per-span index scan, never pulled up into a merge join
) AS r
GROUP BY r.component_id  -- hashed: a storm's spans find each neighbourhood many times
"""

# Linked by refs, both ways: the neighbourhoods of what the batch's reports update (by id), and
# of stored reports that update one of the batch's (sent before it: out of order), through
# ``event_ref`` (migration 0011). Index scans only.
BY_REFS = """
SELECT r.component_id::text FROM incident_report r
WHERE NOT r.cancelled AND r.event_id = ANY(%(refs)s::uuid[])
UNION
SELECT r.component_id::text
FROM event_ref x JOIN incident_report r ON r.event_id = x.event_id
WHERE x.ref = ANY(%(ids)s::uuid[]) AND NOT r.cancelled
"""

# Every live report with its incident and neighbourhood (the stored reports' points come from
# incident_report, stored with them: no ST_PointOnSurface per member on every re-read) ...
LIVE_MEMBERS = f"""
SELECT {_ROW_COLUMNS.replace(_EVENT_POINT, "r.lon, r.lat")}, r.incident_id::text, r.pinned,
    r.component_id::text
FROM incident_report r JOIN event e ON e.event_id = r.event_id
WHERE NOT r.cancelled
"""
# ... of some neighbourhoods: what the partition is re-run on.
NEIGHBOURS = LIVE_MEMBERS + "AND r.component_id = ANY(%(ids)s::uuid[])"

SPAN_TEXT = ("status", "event_type", "start", "end")
SPAN_BOX = ("west", "south", "east", "north")
_PLAIN_POINT_WKB = "0101000000"  # little-endian WKB, type 1 without Z/M/SRID flags


# What the incident rows need of a report beyond correlation's columns.
_ROW_EXTRAS = ("category", "plain_point", "kind", "grid_cell", "seed")


def as_reports(rows: pl.DataFrame) -> pl.DataFrame:
    """Event rows as a report frame (with ``_ROW_EXTRAS``); ``incident_id``,
    ``pinned`` and ``cancelled`` come along when the rows have them. A row correlation cannot
    take (not a picture, not CAP's words, not WGS 84) is left out of the incidents, logged,
    never allowed to fail the batch and so stop the stream."""
    have = rows.columns
    frame = rows.with_columns(
        source_keys(rows),
        (pl.col("pinned") if "pinned" in have else pl.lit(False)).alias("pinned"),
        (pl.col("cancelled") if "cancelled" in have else pl.lit(False)).alias("cancelled"),
        pl.lit(None, pl.String).alias("seed"),  # computed by correlation (cached after)
        (pl.col("incident_id") if "incident_id" in have else pl.lit(None, pl.String)).alias(
            "prior"
        ),
        (pl.col("component_id") if "component_id" in have else pl.lit(None, pl.String)).alias(
            "neighbourhood"
        ),
    ).select(*REPORT_SCHEMA, *_ROW_EXTRAS)
    ok = (
        pl.col("status").is_in(PICTURES)
        & pl.col("severity").is_in(SEVERITY_ORDER)
        & pl.col("certainty").is_in(CERTAINTY_ORDER)
        & pl.col("lat").is_between(-90.0, 90.0)
        & pl.col("lon").is_between(-180.0, 180.0)
        & pl.col("observed_at").is_not_null()
    ).fill_null(False)
    bad = frame.filter(~ok)
    for event_id in bad["event_id"]:
        log.error("event %s left out of the incidents: not a report correlation takes", event_id)
    return frame.filter(ok) if bad.height else frame


def source_keys(rows: pl.DataFrame) -> pl.Series:
    """``ids.source_key`` of every row (no signed sensors yet: see the README)."""
    reporter, system = escaped(rows["reporter"]), escaped(rows["source_system"])
    community = escaped(rows["community_id"].fill_null(""))
    keys = pl.select(
        pl.when(reporter.is_not_null())
        .then(pl.lit("r:") + community + pl.lit(":") + reporter)
        .otherwise(pl.lit("s:") + system)
        .alias("source_key")
    )
    return keys["source_key"]


def escaped(values: pl.Series) -> pl.Series:
    """``ids.esc`` of every value, in bulk: each character outside the unreserved set
    replaced by its percent-encoding, ``%`` first (the encodings bring ``%`` of their own)."""
    reserved = values.str.extract_all(_RESERVED).explode().drop_nulls().unique().to_list()
    for char in sorted(reserved, key=lambda c: c != "%"):
        values = values.str.replace_all(char, quote(char, safe=""), literal=True)
    return values


_RESERVED = r"[^A-Za-z0-9_.~-]"  # what quote() escapes


def frame_rows(batch: Batch) -> pl.DataFrame | None:
    """The rows ``NEW_ROWS`` would fetch, from the batch's frame, when every row was inserted and
    every geometry is a plain 2D point (its representative point is then the point itself,
    exactly as PostGIS gives it); None otherwise (the store is asked)."""
    if batch.frame is None or not batch.all_new:
        return None
    return rows_of(batch.frame)


def rows_of(frame: pl.DataFrame) -> pl.DataFrame | None:
    """``frame_rows`` of a frame as decoded, before it is known whether all of it is new."""
    if "geom_wkb" not in frame.columns or "lon" not in frame.columns:
        return None
    if not frame["geom_wkb"].str.starts_with(_PLAIN_POINT_WKB).all():
        return None
    if "grid_cell" not in frame.columns:  # a frame no grid was assigned to (tests, benches)
        frame = frame.with_columns(pl.lit(None, pl.String).alias("grid_cell"))
    refs = pl.col("refs").str.strip_chars("{}").str.split(",")
    return (
        frame.filter(pl.col("kind").is_in(ROW_KINDS))
        .sort("partition", "offset")
        .with_columns(
            observed_instant(),
            refs.list.eval(pl.element().filter(pl.element() != "")).alias("refs"),
            pl.lit(True).alias("plain_point"),
            pl.when(pl.col("kind") == "verification").then(pl.col("properties")),
        )
        .select(*NEW_SCHEMA)
    )


EMPTY_REPORTS = pl.DataFrame(
    schema={**REPORT_SCHEMA, **{c: ROW_SCHEMA.get(c, pl.String) for c in _ROW_EXTRAS}}
)
