"""The incident stage of fusion: the batch's new reports joined into incidents, in the batch's
transaction (so a crash or a replay gives the same incidents).

Per batch:
1. the new reports (events of kind incident/alert), and the cancels of earlier reports;
2. the stored reports that could link to a new one (a superset: those inside
   ``links.candidate_spans``, and refs in both directions), with the incident each is in
   (``prior``); correlation then needs nothing else (``correlate`` doc);
3. incidents whose member was cancelled are re-clustered from all their live members;
4. ``links.cluster_frame``: the incident of every report; incidents that lost their id
   (merged or renamed) move their other members and leave an alias;
5. every touched incident's row is rebuilt from its live members (``summaries.summarise``,
   hulls of points by shapely, others by PostGIS), and the timeline records what happened.

Reports travel as polars frames (``links.REPORT_SCHEMA``, ids as canonical text) from the batch
or the store to the rows written by COPY: a batch's thousands of reports never become Python
objects one by one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
import polars as pl
import psycopg
import shapely
from psycopg.types.json import Jsonb

from hub.fusion.correlate import CERTAINTY_ORDER, SEVERITY_ORDER
from hub.fusion.links import REPORT_SCHEMA, candidate_spans, correlate_frame
from hub.fusion.rules import Rules
from hub.fusion.stages import Batch
from hub.fusion.summaries import summarise
from hub.store.frames import copy_frame, pg_array, pg_array_of, read_frame
from schemas.event import DECISION_SOURCE

log = logging.getLogger(__name__)

REPORT_KINDS = ("incident", "alert")
_ROW_KINDS = (*REPORT_KINDS, "cancel", "verification")

# The columns of an event as the stage reads it, from the batch or from the store.
ROW_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **{c: REPORT_SCHEMA[c] for c in ("event_id", "event_type", "status", "observed_at")},
    **{c: REPORT_SCHEMA[c] for c in ("lon", "lat", "community_id")},
    **{c: pl.String for c in ("reporter", "source_system", "source_connector")},
    **{c: REPORT_SCHEMA[c] for c in ("severity", "certainty", "refs")},
    "category": pl.String,
    "kind": pl.String,
    "plain_point": pl.Boolean,  # a 2D point: its representative point is itself
}
_NEW_SCHEMA = {**ROW_SCHEMA, "properties": pl.String}
_STORED_SCHEMA = {
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
    GeometryType(e.geom) = 'POINT' AND ST_NDims(e.geom) = 2 AS plain_point
"""

_NEW = f"""
SELECT {_ROW_COLUMNS},
    CASE WHEN e.kind = 'verification' THEN e.properties::text END  -- only they need it
FROM fusion_new n JOIN event e ON e.event_id = n.event_id
WHERE e.kind = ANY(%(kinds)s) OR e.kind IN ('cancel', 'verification')
ORDER BY e.seq
"""

# An incident id as it is now (an id merged away resolves through its alias).
_CURRENT = """
SELECT i.id FROM incident i
WHERE i.id = coalesce((SELECT incident_id FROM incident_alias WHERE alias = %(id)s), %(id)s)
"""

# The neighbourhoods of the stored, live, unpinned reports inside the batch's spans (time and
# box): per span one range scan of incident_report's reach index (LATERAL: a plan that cannot
# turn into a join of whole tables, whatever the statistics say).
_IN_SPANS = """
SELECT DISTINCT r.component_id::text
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
"""

# Linked by refs, both ways: the neighbourhoods of what the batch's reports update (by id), and
# of stored reports that update one of the batch's (sent before it: out of order). Two index
# scans (pkey, GIN on refs).
_BY_REFS = """
SELECT r.component_id::text FROM incident_report r
WHERE NOT r.cancelled AND r.event_id = ANY(%(refs)s::uuid[])
UNION
SELECT r.component_id::text
FROM event e JOIN incident_report r ON r.event_id = e.event_id
WHERE NOT r.cancelled AND e.refs <> '{}' AND e.refs && %(ids)s::uuid[]
"""

# Every live member of some neighbourhoods, with its incident: what the partition is re-run on.
# The stored reports' points come from incident_report (their events' representative points,
# stored with them): no ST_PointOnSurface per member on every re-read.
_NEIGHBOURS = f"""
SELECT {_ROW_COLUMNS.replace(_EVENT_POINT, "r.lon, r.lat")}, r.incident_id::text, r.pinned,
    r.component_id::text
FROM incident_report r JOIN event e ON e.event_id = r.event_id
WHERE r.component_id = ANY(%(ids)s::uuid[]) AND NOT r.cancelled
"""

_SPAN_TEXT = ("status", "event_type", "start", "end")
_SPAN_BOX = ("west", "south", "east", "north")
_PLAIN_POINT_WKB = "0101000000"  # little-endian WKB, type 1 without Z/M/SRID flags
_PICTURES = ("actual", "exercise", "test")


@dataclass
class IncidentCounts:
    reports: int = 0
    created: int = 0
    merged: int = 0
    cancelled: int = 0
    touched: set[str] = field(default_factory=set)  # incident ids, canonical text


@dataclass(frozen=True)
class Decision:
    """A principal's word on an incident, carried by a ``verification`` event (the API writes
    them): ``properties`` = {"decision": verified|refuted|split, "incident_id", "reason",
    "event_id" (split: the report to take out)}; the reporter is the principal."""

    event_id: uuid.UUID
    decision: str
    incident_id: uuid.UUID | None
    report_id: uuid.UUID | None
    by: str
    at: Any
    reason: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Decision:
        props = orjson.loads(row["properties"]) if row.get("properties") else {}
        return cls(
            event_id=uuid.UUID(row["event_id"]),
            decision=str(props.get("decision", "")),
            incident_id=_uuid(props.get("incident_id")),
            report_id=_uuid(props.get("event_id")),
            by=row["reporter"] or row["source_system"],
            at=row["observed_at"],
            reason=props.get("reason"),
        )

    def detail(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "decision": self.decision}


# Decisions are the hub API's (``schemas.event.DECISION_SOURCE``), which checks who may rule; a
# verification event from anywhere else is stored as sent and changes nothing (in production,
# Kafka ACLs keep connectors from writing as the API).


def _decisions(rows: Iterable[dict[str, Any]]) -> list[Decision]:
    out = []
    for row in rows:
        if (row["source_system"], row["source_connector"]) != DECISION_SOURCE:
            log.warning("verification event %s not from the hub's API: ignored", row["event_id"])
            continue
        out.append(Decision.of(row))
    return out


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _current(conn: psycopg.Connection[Any], incident: uuid.UUID | None) -> uuid.UUID | None:
    if incident is None:
        return None
    row = conn.execute(_CURRENT, {"id": incident}).fetchone()
    return row[0] if row is not None else None


def as_reports(rows: pl.DataFrame) -> pl.DataFrame:
    """Event rows as a report frame (with ``category`` and ``plain_point``); ``incident_id``,
    ``pinned`` and ``cancelled`` come along when the rows have them. A row correlation cannot
    take (not a picture, not CAP's words, not WGS 84) is left out of the incidents, logged,
    never allowed to fail the batch and so stop the stream."""
    have = rows.columns
    frame = rows.with_columns(
        _source_keys(rows),
        (pl.col("pinned") if "pinned" in have else pl.lit(False)).alias("pinned"),
        (pl.col("cancelled") if "cancelled" in have else pl.lit(False)).alias("cancelled"),
        (pl.col("incident_id") if "incident_id" in have else pl.lit(None, pl.String)).alias(
            "prior"
        ),
        (pl.col("component_id") if "component_id" in have else pl.lit(None, pl.String)).alias(
            "neighbourhood"
        ),
    ).select(*REPORT_SCHEMA, "category", "plain_point")
    ok = (
        pl.col("status").is_in(_PICTURES)
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


def _source_keys(rows: pl.DataFrame) -> pl.Series:
    """``correlate.source_key`` of every row (no signed sensors yet: see the README)."""
    reporter, system = _escaped(rows["reporter"]), _escaped(rows["source_system"])
    community = _escaped(rows["community_id"].fill_null(""))
    keys = pl.select(
        pl.when(reporter.is_not_null())
        .then(pl.lit("r:") + community + pl.lit(":") + reporter)
        .otherwise(pl.lit("s:") + system)
        .alias("source_key")
    )
    return keys["source_key"]


def _escaped(values: pl.Series) -> pl.Series:
    """``correlate.esc`` of every value, in bulk: each character outside the unreserved set
    replaced by its percent-encoding, ``%`` first (the encodings bring ``%`` of their own)."""
    reserved = values.str.extract_all(_RESERVED).explode().drop_nulls().unique().to_list()
    for char in sorted(reserved, key=lambda c: c != "%"):
        values = values.str.replace_all(char, quote(char, safe=""), literal=True)
    return values


_RESERVED = r"[^A-Za-z0-9_.~-]"  # what quote() escapes


def _frame_rows(batch: Batch) -> pl.DataFrame | None:
    """The rows ``_NEW`` would fetch, from the batch's frame, when every row was inserted and
    every geometry is a plain 2D point (its representative point is then the point itself,
    exactly as PostGIS gives it); None otherwise (the store is asked)."""
    if batch.frame is None or not batch.all_new:
        return None
    return _rows_of(batch.frame)


def _rows_of(frame: pl.DataFrame) -> pl.DataFrame | None:
    """``_frame_rows`` of a frame as decoded, before it is known whether all of it is new."""
    if "geom_wkb" not in frame.columns or "lon" not in frame.columns:
        return None
    if not frame["geom_wkb"].str.starts_with(_PLAIN_POINT_WKB).all():
        return None
    refs = pl.col("refs").str.strip_chars("{}").str.split(",")
    return (
        frame.filter(pl.col("kind").is_in(_ROW_KINDS))
        .sort("partition", "offset")
        .with_columns(
            pl.col("observed_at").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC"
            ),
            refs.list.eval(pl.element().filter(pl.element() != "")).alias("refs"),
            pl.lit(True).alias("plain_point"),
            pl.when(pl.col("kind") == "verification").then(pl.col("properties")),
        )
        .select(*_NEW_SCHEMA)
    )


_EMPTY_REPORTS = pl.DataFrame(
    schema={**REPORT_SCHEMA, "category": pl.String, "plain_point": pl.Boolean}
)


class IncidentStage:
    """Applies one batch's new events to the incidents (not thread-safe: one per sink)."""

    name = "incidents"

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_CREATE_STAGE)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> IncidentCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``."""
        counts = self._apply(conn, batch)
        if batch is not None:
            batch.changed_incidents |= counts.touched
        return counts

    def plan(
        self, frame: pl.DataFrame
    ) -> Callable[[psycopg.Connection[Any]], Linked | None] | None:
        """The correlation of the frame's reports with their stored candidates, to compute
        beside the insert (``stages.Planning``). None when the batch needs the store first
        (cancels, decisions, geometries other than points) or holds no reports. ``apply``
        uses the plan only when every row of the frame was inserted and no stage added
        events."""
        kinds = frame["kind"]
        if kinds.is_in(["cancel", "verification"]).any() or not kinds.is_in(REPORT_KINDS).any():
            return None

        def job(reader: psycopg.Connection[Any]) -> Linked | None:
            rows = _rows_of(frame)
            if rows is None:
                return None
            new = as_reports(rows)
            started = time.perf_counter()
            stored = self._candidates(reader, new)
            read = time.perf_counter()
            linked = self._link(new, stored, _EMPTY_REPORTS, set())
            log.debug(
                "incidents planned",
                extra={
                    "new": new.height,
                    "neighbours": stored.height,
                    "read_ms": round(1000 * (read - started), 1),
                    "link_ms": round(1000 * (time.perf_counter() - read), 1),
                },
            )
            return linked

        return job

    def _apply(self, conn: psycopg.Connection[Any], batch: Batch | None) -> IncidentCounts:
        counts = IncidentCounts()
        judged: list[Decision]
        planned = batch.plans.get(self.name) if batch is not None and batch.all_new else None
        if isinstance(planned, Linked):  # a planned batch holds no decisions (``plan``)
            linked, judged = planned, []
            counts.reports = len(linked.arrived)
        elif (found := self._link_batch(conn, batch, counts)) is not None:
            linked, judged = found
        else:
            return counts
        self._write(conn, linked, counts)
        self._decide(conn, judged, counts)  # after the rebuild: a decision lands on the final ids
        return counts

    def _link_batch(
        self, conn: psycopg.Connection[Any], batch: Batch | None, counts: IncidentCounts
    ) -> tuple[Linked, list[Decision]] | None:
        """Without a plan: the batch's rows (from the frame or the store), cancels and splits
        applied, candidates read, correlation computed. None when only decisions were left
        (applied here)."""
        rows = _frame_rows(batch) if batch is not None else None
        if rows is None:
            rows = read_frame(conn, _NEW, {"kinds": list(REPORT_KINDS)}, _NEW_SCHEMA)
        new = as_reports(rows.filter(pl.col("kind").is_in(REPORT_KINDS)))
        cancels = rows.filter(pl.col("kind") == "cancel")["refs"].explode().drop_nulls()
        verdicts = rows.filter(pl.col("kind") == "verification")
        decisions = _decisions(verdicts.to_dicts()) if verdicts.height else []
        reclustered = pl.concat(
            [
                self._cancel(conn, cancels.to_list(), counts),
                self._split(conn, [d for d in decisions if d.decision == "split"], counts),
            ]
        )
        judged = [d for d in decisions if d.decision in ("verified", "refuted")]
        if new.height == 0 and reclustered.height == 0:
            self._decide(conn, judged, counts)
            return None
        counts.reports = new.height
        stored = self._candidates(conn, new)
        return self._link(new, stored, reclustered, set(counts.touched)), judged

    def _link(
        self,
        new: pl.DataFrame,
        stored: pl.DataFrame,
        reclustered: pl.DataFrame,
        touched: set[str],
    ) -> Linked:
        """Correlation of the batch's reports with every live member of the neighbourhoods
        they touch (``stored``, and ``reclustered`` after cancels and splits), and what it
        changes; no database (a plan runs it beside the insert). ``touched``: incidents
        already changed (by cancels and splits)."""
        new = _follow_pinned(new, stored)
        members = pl.concat([stored, reclustered, new]).unique(
            "event_id", keep="last", maintain_order=True
        )
        members = members.with_columns(correlate_frame(members, self.rules))
        assigned = members.filter(pl.col("incident").is_not_null())
        arrived = set(new["event_id"].to_list())
        was = assigned.filter(pl.col("prior").is_not_null())
        moved = was.filter(
            (pl.col("incident") != pl.col("prior"))
            | (pl.col("component") != pl.col("neighbourhood"))
        )
        alive = set(assigned["incident"].unique().to_list())
        moves = _successors(was, alive)
        changed = touched | set(moved["incident"].to_list()) | set(moved["prior"].to_list())
        changed |= set(assigned.filter(pl.col("prior").is_null())["incident"].to_list())
        changed |= set(moves.values())
        fresh = assigned.filter(pl.col("incident").is_in(list(changed & alive)))
        return Linked(
            assigned=assigned,
            arrived=arrived,
            moved=moved.select("event_id", "incident", "component"),
            moves=moves,
            touched=changed & alive,
            fresh=_incident_rows(fresh, arrived, self.rules),
            closed=sorted(touched - alive - set(moves)),
        )

    def _write(self, conn: psycopg.Connection[Any], linked: Linked, counts: IncidentCounts) -> None:
        self._rename(conn, linked.moves, counts)
        self._assign(conn, linked)
        counts.touched |= linked.touched
        counts.created = self._rebuild(conn, linked)

    # --- the steps ----------------------------------------------------------------------

    def _cancel(
        self, conn: psycopg.Connection[Any], ids: list[str], counts: IncidentCounts
    ) -> pl.DataFrame:
        """Mark cancelled reports; return the live members of their neighbourhoods to
        partition again (a cancelled report may have been a seed or a bridge)."""
        if not ids:
            return _EMPTY_REPORTS
        hit = conn.execute(
            "UPDATE incident_report SET cancelled = true WHERE event_id = ANY(%s::uuid[])"
            " AND NOT cancelled RETURNING incident_id, event_id, component_id",
            (pg_array(ids),),
        ).fetchall()
        counts.cancelled = len(hit)
        for incident, event_id, _ in hit:
            _timeline(conn, incident, "report_cancelled", event_id)
        counts.touched.update(str(incident) for incident, _, _ in hit)
        return self._live_members(conn, sorted({str(c) for _, _, c in hit}))

    def _split(
        self, conn: psycopg.Connection[Any], splits: list[Decision], counts: IncidentCounts
    ) -> pl.DataFrame:
        """Pin each split-out report (its own incident from now on, never merged again
        automatically); return the live members of its neighbourhood, to partition again."""
        incidents, components = [], []
        for d in splits:
            current = _current(conn, d.incident_id)
            pinned = conn.execute(
                "UPDATE incident_report SET pinned = true WHERE event_id = %s"
                " AND incident_id = %s AND NOT pinned RETURNING component_id",
                (d.report_id, current),
            ).fetchone()
            if current is None or pinned is None:
                log.warning(
                    "split of %s from %s: not a member; ignored", d.report_id, d.incident_id
                )
                continue
            _timeline(conn, current, "report_split", d.report_id, d.detail())
            incidents.append(str(current))
            components.append(str(pinned[0]))
        counts.touched.update(incidents)
        return self._live_members(conn, components)

    def _live_members(
        self, conn: psycopg.Connection[Any], neighbourhoods: Sequence[str]
    ) -> pl.DataFrame:
        """Every live member of ``neighbourhoods``, with its incident and neighbourhood."""
        if not neighbourhoods:
            return _EMPTY_REPORTS
        ids = pg_array(sorted(set(neighbourhoods)))
        return as_reports(read_frame(conn, _NEIGHBOURS, {"ids": ids}, _STORED_SCHEMA))

    def _decide(
        self, conn: psycopg.Connection[Any], decisions: list[Decision], counts: IncidentCounts
    ) -> None:
        """Verified or refuted by a principal: who, when, why; it outlasts later reports."""
        for d in decisions:
            current = _current(conn, d.incident_id)
            if current is None:
                log.warning("decision on unknown incident %s ignored", d.incident_id)
                continue
            conn.execute(
                "UPDATE incident SET verification = %s, decided_by = %s, decided_at = %s,"
                " decision_reason = %s, updated_seq = nextval('incident_update_seq')"
                " WHERE id = %s",
                (d.decision, d.by, d.at, d.reason, current),
            )
            _timeline(conn, current, d.decision, d.event_id, d.detail())
            counts.touched.add(str(current))

    def _candidates(self, conn: psycopg.Connection[Any], new: pl.DataFrame) -> pl.DataFrame:
        """Every live member of the stored neighbourhoods the batch may touch (``correlate``
        doc): those of the stored reports that may link to a new one (a superset), and of
        the reports linked to one by refs."""
        found: set[str] = set()
        spans = candidate_spans(self.rules, new)
        if spans.height:
            params = {c: pg_array_of(spans[c]) for c in _SPAN_TEXT}
            params |= {c: pg_array(spans[c]) for c in _SPAN_BOX}
            found.update(c for (c,) in conn.execute(_IN_SPANS, params).fetchall())
        if new.height:
            refs = new["refs"].explode().drop_nulls()
            params = {"refs": pg_array(refs), "ids": pg_array(new["event_id"])}
            found.update(c for (c,) in conn.execute(_BY_REFS, params).fetchall())
        return self._live_members(conn, sorted(found))

    def _rename(
        self, conn: psycopg.Connection[Any], moves: dict[str, str], counts: IncidentCounts
    ) -> None:
        """Incidents that lost their id (merged, renamed, or split by a new partition): the old
        id stays as an alias of the incident that took most of its members, and its timeline
        and decision follow there."""
        if not moves:
            return
        merges = sorted(moves.items())
        params = {"old": pg_array(o for o, _ in merges), "new": pg_array(n for _, n in merges)}
        for statement in _MERGES:
            conn.execute(statement, params)
        counts.merged += len(merges)
        conn.execute("DELETE FROM incident WHERE id = ANY(%s::uuid[])", (pg_array(sorted(moves)),))

    def _assign(self, conn: psycopg.Connection[Any], linked: Linked) -> None:
        """The batch's reports by COPY (new events: no row can exist yet); stored reports whose
        incident or neighbourhood changed in one set-based update."""
        joined = linked.assigned.filter(pl.col("event_id").is_in(linked.arrived))
        with conn.cursor() as cur:
            copy_frame(
                cur,
                _COPY_REPORTS,
                joined.select("event_id", "incident", "status", "event_type", "observed_at",
                              "pinned", "component", "lon", "lat"),
            )  # fmt: skip
            moved = linked.moved
            if moved.height:
                cur.execute(
                    _MOVE_REPORTS,
                    {c: pg_array(moved[c]) for c in ("event_id", "incident", "component")},
                )

    def _rebuild(self, conn: psycopg.Connection[Any], linked: Linked) -> int:
        """Every changed incident's row from its live members (all in hand); incidents left
        without a live member are closed. Returns how many incidents are new."""
        if linked.closed:
            conn.execute(
                "UPDATE incident SET state = 'closed',"
                " updated_seq = nextval('incident_update_seq') WHERE id = ANY(%s::uuid[])",
                (pg_array(linked.closed),),
            )
        rows = linked.fresh
        return _write_rows(conn, rows) if rows.height else 0


@dataclass(frozen=True)
class Linked:
    """What correlation decided for a batch, before anything of it is written."""

    assigned: pl.DataFrame  # every partitioned report (stored and new) with its incident
    arrived: set[str]  # the batch's reports
    moved: pl.DataFrame  # stored reports whose incident or neighbourhood changed
    moves: dict[str, str]  # incidents that lost their id -> where most of their members went
    touched: set[str]  # incidents whose members changed (all rebuilt from ``fresh``)
    fresh: pl.DataFrame  # the rows of the touched incidents
    closed: list[str]  # incidents left without a live member


def _incident_rows(members: pl.DataFrame, arrived: set[str], rules: Rules) -> pl.DataFrame:
    """``summarise`` of the members, with whether all of an incident's members are 2D points
    (``plain_point``) and all arrived in this batch (``new``: the incident cannot exist), and
    the geometry of those of points (``geom``)."""
    flags = members.group_by("incident").agg(
        pl.col("plain_point").all(), pl.col("event_id").is_in(list(arrived)).all().alias("new")
    )
    rows = summarise(members, rules).join(flags, on="incident", maintain_order="left")
    return rows.with_columns(_hulls(rows))


def _follow_pinned(new: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """An update of a report an operator split out is pinned too: it joins that report's
    incident (by its refs) and never anything else."""
    pinned = stored.filter(pl.col("pinned"))["event_id"].to_list()
    if not pinned:
        return new
    follows = pl.col("refs").list.eval(pl.element().is_in(pinned)).list.any()
    return new.with_columns((pl.col("pinned") | follows).alias("pinned"))


def _successors(stored: pl.DataFrame, alive: set[str]) -> dict[str, str]:
    """Prior incidents that no longer exist -> the incident that took most of their members
    (ties: the older id). ``stored``: the stored reports with ``prior`` and ``incident``."""
    gone = (
        stored.filter(~pl.col("prior").is_in(list(alive)))
        .group_by("prior", "incident")
        .agg(pl.len().alias("n"))
        .sort(["prior", "n", "incident"], descending=[False, True, False])
        .group_by("prior", maintain_order=True)
        .agg(pl.col("incident").first())
    )
    return dict(gone.iter_rows())


# --- SQL helpers ------------------------------------------------------------------------------


def _timeline(
    conn: psycopg.Connection[Any],
    incident: uuid.UUID | str,
    what: str,
    event_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO incident_timeline (incident_id, at, what, event_id, detail)"
        " VALUES (%s, coalesce((SELECT observed_at FROM event WHERE event_id = %s), now()),"
        " %s, %s, %s)",
        (incident, event_id, what, event_id, Jsonb(detail or {})),
    )


# Incidents merged into others (``%(old)s`` -> ``%(new)s``, by old id): members, timeline and
# aliases follow, the old id becomes an alias, a decision on the merged-away incident survives
# when the survivor has none (the first such, by old id), and the timeline records the merge.
_MOVES = "SELECT * FROM unnest(%(old)s::uuid[], %(new)s::uuid[]) AS m(old, new)"
_MERGES = (
    f"UPDATE incident_timeline t SET incident_id = m.new FROM ({_MOVES}) m"
    " WHERE t.incident_id = m.old",
    f"UPDATE incident_alias a SET incident_id = m.new FROM ({_MOVES}) m"
    " WHERE a.incident_id = m.old",
    f"INSERT INTO incident_alias (alias, incident_id) SELECT old, new FROM ({_MOVES}) m"
    " ORDER BY old ON CONFLICT (alias) DO UPDATE SET incident_id = EXCLUDED.incident_id",
    f"""UPDATE incident n SET verification = o.verification, decided_by = o.decided_by,
        decided_at = o.decided_at, decision_reason = o.decision_reason
    FROM (SELECT DISTINCT ON (m.new) m.new, i.* FROM ({_MOVES}) m
          JOIN incident i ON i.id = m.old WHERE i.decided_at IS NOT NULL
          ORDER BY m.new, m.old) o
    WHERE n.id = o.new AND n.decided_at IS NULL""",
    "INSERT INTO incident_timeline (incident_id, at, what, event_id, detail)"
    f" SELECT new, now(), 'merged', NULL, jsonb_build_object('from', old::text) FROM ({_MOVES}) m"
    " ORDER BY old",
)


_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS incident_stage (
    id uuid, status text, category text, event_type text, severity text, certainty text,
    verification text, sources int, reports int, communities text[], first_observed_at
    timestamptz, last_observed_at timestamptz, members uuid[], geom geometry
) ON COMMIT DELETE ROWS
"""

_UPSERT = """
INSERT INTO incident AS i (id, status, state, category, event_type, severity, certainty,
    verification, sources, reports, communities, first_observed_at, last_observed_at, geom,
    updated_seq)
SELECT s.id, s.status, 'open', s.category, s.event_type, s.severity, s.certainty,
    s.verification, s.sources, s.reports, s.communities, s.first_observed_at,
    s.last_observed_at, coalesce(s.geom, g.geom), nextval('incident_update_seq')
FROM incident_stage s
LEFT JOIN LATERAL (
    -- members with areas (the points' hull came from Python): one report, its geometry;
    -- more, the hull of them all (a line when all lie on one)
    SELECT CASE WHEN cardinality(s.members) = 1
        THEN (SELECT e.geom FROM event e WHERE e.event_id = s.members[1])
        ELSE (SELECT ST_ConvexHull(ST_Collect(e.geom)) FROM event e
              WHERE e.event_id = ANY(s.members)) END
) AS g(geom) ON s.geom IS NULL
ORDER BY s.id
ON CONFLICT (id) DO UPDATE SET
    state = 'open', category = EXCLUDED.category, event_type = EXCLUDED.event_type,
    severity = EXCLUDED.severity, certainty = EXCLUDED.certainty,
    verification = CASE WHEN i.decided_at IS NULL THEN EXCLUDED.verification
                        ELSE i.verification END,
    sources = EXCLUDED.sources, reports = EXCLUDED.reports,
    communities = EXCLUDED.communities, first_observed_at = EXCLUDED.first_observed_at,
    last_observed_at = EXCLUDED.last_observed_at, geom = EXCLUDED.geom,
    updated_seq = EXCLUDED.updated_seq
RETURNING (xmax = 0) AS created
"""
# status, event_type and observed_at repeat the event's: the candidate search then reads one
# narrow index of live reports (``_IN_SPANS``) instead of the whole event history.
_COPY_REPORTS = (
    "COPY incident_report (event_id, incident_id, status, event_type, observed_at, pinned,"
    " component_id, lon, lat) FROM STDIN (FORMAT csv)"
)
_MOVE_REPORTS = """
UPDATE incident_report r SET incident_id = m.incident, component_id = m.component
FROM unnest(%(event_id)s::uuid[], %(incident)s::uuid[], %(component)s::uuid[])
    AS m(event_id, incident, component)
WHERE r.event_id = m.event_id
"""

_INCIDENT_COLUMNS = (
    "id, status, category, event_type, severity, certainty, verification, sources, reports,"
    " communities, first_observed_at, last_observed_at"
)
# updated_seq comes from the column's default (the sequence), state 'open' likewise.
_COPY_INCIDENTS = f"COPY incident ({_INCIDENT_COLUMNS}, geom) FROM STDIN (FORMAT csv)"

_COPY_STAGE = f"COPY incident_stage ({_INCIDENT_COLUMNS}, members, geom) FROM STDIN (FORMAT csv)"

_ROW_FIELDS: list[pl.Expr | str] = [
    pl.col("incident").alias("id"), "status", "category", "event_type", "severity", "certainty",
    "verification", "sources", "reports", "communities", "first_observed_at", "last_observed_at",
]  # fmt: skip


def _hulls(rows: pl.DataFrame) -> pl.Series:
    """Each incident's geometry as hex WKB when its members are all 2D points (their point,
    or their convex hull, as ST_ConvexHull gives it), else null (PostGIS builds it)."""
    plain = rows["plain_point"].to_numpy()
    single = plain & (rows["reports"].to_numpy() == 1)
    several = plain & ~single
    out = np.full(rows.height, None, dtype=object)
    if single.any():
        points = rows.filter(pl.Series(single))
        out[single] = _point_wkb(points["lon"].list.first(), points["lat"].list.first())
    if several.any():
        hulls = rows.filter(pl.Series(several))
        xy = np.column_stack([hulls["lon"].explode().to_numpy(), hulls["lat"].explode().to_numpy()])
        which = np.repeat(np.arange(hulls.height), hulls["reports"].to_numpy())
        out[several] = shapely.to_wkb(
            shapely.convex_hull(shapely.multipoints(xy, indices=which)), hex=True
        )
    return pl.Series("geom", out, dtype=pl.String)


def _point_wkb(lon: pl.Series, lat: pl.Series) -> list[str]:
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


def _write_rows(conn: psycopg.Connection[Any], rows: pl.DataFrame) -> int:
    """The incident rows (``_incident_rows``): brand-new ones of plain points by COPY
    straight into the table (no conflict is possible), the others staged by COPY and upserted
    in one statement (hulls with areas by PostGIS). Returns how many incidents are new."""
    straight = pl.col("new") & pl.col("geom").is_not_null()
    direct, staged = rows.filter(straight), rows.filter(~straight)
    with conn.cursor() as cur:
        copy_frame(cur, _COPY_INCIDENTS, direct.select(*_ROW_FIELDS, "geom"))
        if staged.height == 0:
            return direct.height
        copy_frame(cur, _COPY_STAGE, staged.select(*_ROW_FIELDS, "members", "geom"))
        created = cur.execute(_UPSERT).fetchall()
        cur.execute("TRUNCATE incident_stage")  # a second batch in one transaction starts empty
    return direct.height + sum(1 for (new,) in created if new)
