"""The incident stage of fusion: the batch's new reports joined into incidents, in the batch's
transaction (so a crash or a replay gives the same incidents).

Per batch:
1. the new reports (events of kind incident/alert), and the cancels of earlier reports;
2. the stored reports that could link to a new one (a superset: those inside
   ``correlate.candidate_spans``, and refs in both directions), with the incident each is in
   (``prior``); correlation then needs nothing else (``correlate`` doc);
3. incidents whose member was cancelled are re-clustered from all their live members;
4. ``correlate.cluster``: the incident of every report; incidents that lost their id
   (merged or renamed) move their other members and leave an alias;
5. every touched incident's row is rebuilt from its live members (summary in Python, hull in
   PostGIS), and the timeline records what happened.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import polars as pl
import psycopg
import shapely
from psycopg.types.json import Jsonb

from hub.fusion.correlate import (
    IncidentSummary,
    Report,
    Span,
    candidate_spans,
    cluster,
    source_key,
    successors,
)
from hub.fusion.rules import Rules
from hub.fusion.stages import Batch
from schemas.event import DECISION_SOURCE

log = logging.getLogger(__name__)

REPORT_KINDS = ("incident", "alert")

# The columns a Report is built from (``_report``), for new and stored events alike.
_REPORT_COLUMNS = """
    e.event_id, e.event_type, e.status, e.observed_at,
    ST_X(ST_PointOnSurface(e.geom)) AS lon, ST_Y(ST_PointOnSurface(e.geom)) AS lat,
    e.community_id, e.reporter, e.source_system, e.severity, e.certainty, e.refs,
    e.category, e.kind, e.source_connector,
    GeometryType(e.geom) = 'POINT' AND ST_NDims(e.geom) = 2 AS plain_point
"""

_NEW = f"""
SELECT {_REPORT_COLUMNS},
    CASE WHEN e.kind = 'verification' THEN e.properties END AS properties  -- only they need it
FROM fusion_new n JOIN event e ON e.event_id = n.event_id
WHERE e.kind = ANY(%(kinds)s) OR e.kind IN ('cancel', 'verification')
ORDER BY e.seq
"""

# An incident id as it is now (an id merged away resolves through its alias).
_CURRENT = """
SELECT i.id FROM incident i
WHERE i.id = coalesce((SELECT incident_id FROM incident_alias WHERE alias = %(id)s), %(id)s)
"""

# Stored, live, unpinned reports inside the batch's spans, with their incident: per span one range
# scan of incident_report's reach index (LATERAL: a plan that cannot turn into a join of whole
# tables, whatever the statistics say). Their events are read by key afterwards (``_BY_ID``).
_IN_SPANS = """
SELECT DISTINCT r.event_id, r.incident_id
FROM unnest(%(status)s::text[], %(event_type)s::text[], %(start)s::timestamptz[],
            %(end)s::timestamptz[]) AS s(status, event_type, t0, t1)
CROSS JOIN LATERAL (
    SELECT event_id, incident_id FROM incident_report r
    WHERE r.status = s.status AND r.event_type = s.event_type
        AND r.observed_at BETWEEN s.t0 AND s.t1 AND NOT r.cancelled AND NOT r.pinned
    OFFSET 0  -- a fence: kept as a per-span index scan, never pulled up into a merge join
) AS r
"""

_BY_ID = f"""
SELECT {_REPORT_COLUMNS} FROM event e WHERE e.event_id = ANY(%(ids)s::uuid[])
"""

# Linked by refs, both ways: what the batch's reports update (by id), and stored reports that
# update one of the batch's (sent before it: out of order). Two index scans (pkey, GIN on refs).
_BY_REFS = f"""
SELECT {_REPORT_COLUMNS}, r.incident_id, r.pinned
FROM event e JOIN incident_report r ON r.event_id = e.event_id
WHERE NOT r.cancelled AND e.event_id = ANY(%(refs)s)
UNION
SELECT {_REPORT_COLUMNS}, r.incident_id, r.pinned
FROM event e JOIN incident_report r ON r.event_id = e.event_id
WHERE NOT r.cancelled AND e.refs <> '{{}}' AND e.refs && %(ids)s
"""

_MEMBERS = f"""
SELECT {_REPORT_COLUMNS}, r.incident_id, r.pinned, r.cancelled
FROM incident_report r JOIN event e ON e.event_id = r.event_id
WHERE r.incident_id = ANY(%(ids)s)
"""


@dataclass
class IncidentCounts:
    reports: int = 0
    created: int = 0
    merged: int = 0
    cancelled: int = 0
    touched: set[uuid.UUID] = field(default_factory=set)


def _report(row: dict[str, Any], **flags: bool) -> Report:
    return Report(
        event_id=row["event_id"],
        event_type=row["event_type"],
        status=row["status"],
        observed_at=row["observed_at"],
        lon=row["lon"],
        lat=row["lat"],
        community_id=row["community_id"],
        source_key=source_key(row["reporter"], row["source_system"], row["community_id"]),
        severity=row["severity"],
        certainty=row["certainty"],
        refs=tuple(row["refs"] or ()),
        **flags,
    )


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
        props = row.get("properties") or {}
        return cls(
            event_id=row["event_id"],
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


def _reports(rows: Iterable[dict[str, Any]]) -> list[Report]:
    """New reports; one that correlation refuses is stored as an event and left out of the
    incidents (logged), never allowed to fail the batch and so stop the stream."""
    out = []
    for row in rows:
        try:
            out.append(_report(row))
        except ValueError:
            log.exception("event %s left out of the incidents", row["event_id"])
    return out


class IncidentStage:
    """Applies one batch's new events to the incidents (not thread-safe: one per sink)."""

    name = "incidents"

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._areal: set[uuid.UUID] = set()  # of the current batch

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_CREATE_STAGE)

    def _fetch(
        self, conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Rows of reports; notes those whose geometry is more than a 2D point (the hull of
        an incident with one of them is PostGIS's, not the hull of representative points)."""
        rows = _fetch(conn, sql, params)
        self._areal.update(r["event_id"] for r in rows if not r["plain_point"])
        return rows

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> IncidentCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``."""
        self._areal.clear()
        counts = self._apply(conn, batch)
        if batch is not None:
            batch.changed_incidents |= counts.touched
        return counts

    def _apply(self, conn: psycopg.Connection[Any], batch: Batch | None) -> IncidentCounts:
        counts = IncidentCounts()
        rows = _frame_rows(batch) if batch is not None else None
        if rows is None:
            rows = self._fetch(conn, _NEW, {"kinds": list(REPORT_KINDS)})
        new = _reports([r for r in rows if r["kind"] in REPORT_KINDS])
        cancelled_ids = [ref for r in rows if r["kind"] == "cancel" for ref in (r["refs"] or ())]
        decisions = _decisions(r for r in rows if r["kind"] == "verification")
        reclustered = self._cancel(conn, cancelled_ids, counts)
        reclustered += self._split(conn, [d for d in decisions if d.decision == "split"], counts)
        judged = [d for d in decisions if d.decision in ("verified", "refuted")]
        if not new and not reclustered:
            self._decide(conn, judged, counts)
            return counts
        counts.reports = len(new)
        prior, stored = self._candidates(conn, new)
        new = _follow_pinned(new, stored)
        members = {r.event_id: r for r in (*stored, *reclustered, *new)}
        assignment = cluster(members.values(), self.rules, prior)
        self._rename(conn, successors(prior, assignment), counts)
        self._assign(conn, new, reclustered, assignment)
        # Only incidents a new or re-clustered report is in, or that lost or gained an id,
        # changed: the other candidates were fetched as a superset and are left alone.
        moved = (assignment[r.event_id] for r in (*new, *reclustered) if r.event_id in assignment)
        counts.touched.update(moved)
        fresh = {
            i: reports
            for i, reports in _fresh(assignment, members, prior).items()
            if i in counts.touched
        }
        stale = counts.touched - fresh.keys()
        categories = _categories(conn, rows, fresh)
        arrived = {r.event_id for r in new}
        brand_new = {
            i for i, members in fresh.items() if all(r.event_id in arrived for r in members)
        }
        counts.created = self._rebuild(conn, stale, fresh, categories, brand_new)
        self._decide(conn, judged, counts)  # after the rebuild: a decision lands on the final ids
        return counts

    # --- the steps ----------------------------------------------------------------------

    def _cancel(
        self, conn: psycopg.Connection[Any], ids: list[uuid.UUID], counts: IncidentCounts
    ) -> list[Report]:
        """Mark cancelled reports; return the live members of their incidents to re-cluster
        (without prior: a cancelled bridge may split an incident)."""
        if not ids:
            return []
        hit = conn.execute(
            "UPDATE incident_report SET cancelled = true"
            " WHERE event_id = ANY(%s) AND NOT cancelled RETURNING incident_id, event_id",
            (ids,),
        ).fetchall()
        counts.cancelled = len(hit)
        incidents = sorted({incident for incident, _ in hit})
        for incident, event_id in hit:
            _timeline(conn, incident, "report_cancelled", event_id)
        counts.touched.update(incidents)
        return [
            _report(r, pinned=r["pinned"])
            for r in self._fetch(conn, _MEMBERS, {"ids": incidents})
            if not r["cancelled"]
        ]

    def _split(
        self, conn: psycopg.Connection[Any], splits: list[Decision], counts: IncidentCounts
    ) -> list[Report]:
        """Pin each split-out report (its own incident from now on, never merged again
        automatically); return the live members of the incidents it left, to re-cluster."""
        incidents = []
        for d in splits:
            current = _current(conn, d.incident_id)
            pinned = conn.execute(
                "UPDATE incident_report SET pinned = true WHERE event_id = %s"
                " AND incident_id = %s AND NOT pinned RETURNING incident_id",
                (d.report_id, current),
            ).fetchone()
            if current is None or pinned is None:
                log.warning(
                    "split of %s from %s: not a member; ignored", d.report_id, d.incident_id
                )
                continue
            _timeline(conn, current, "report_split", d.report_id, d.detail())
            incidents.append(current)
        counts.touched.update(incidents)
        return [
            _report(r, pinned=r["pinned"])
            for r in self._fetch(conn, _MEMBERS, {"ids": incidents})
            if not r["cancelled"]
        ]

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
            counts.touched.add(current)

    def _candidates(
        self, conn: psycopg.Connection[Any], new: Sequence[Report]
    ) -> tuple[dict[uuid.UUID, uuid.UUID], list[Report]]:
        """A superset of the stored reports that may link to the batch (``correlate`` doc),
        with the incident each is in."""
        spans = candidate_spans(self.rules, new)
        rows: list[dict[str, Any]] = []
        if spans:
            fields = ("status", "event_type", "start", "end")
            params = {f: [getattr(span, f) for span in spans] for f in fields}
            found = dict(conn.execute(_IN_SPANS, params).fetchall())
            if found:
                events = self._fetch(conn, _BY_ID, {"ids": list(found)})
                rows = [r | {"incident_id": found[r["event_id"]]} for r in _in_boxes(events, spans)]
        if new:
            refs = [ref for r in new for ref in r.refs]
            rows += self._fetch(conn, _BY_REFS, {"refs": refs, "ids": [r.event_id for r in new]})
        prior = {r["event_id"]: r["incident_id"] for r in rows}
        return prior, [_report(r, pinned=r.get("pinned", False)) for r in rows]

    def _rename(
        self,
        conn: psycopg.Connection[Any],
        moves: dict[uuid.UUID, frozenset[uuid.UUID]],
        counts: IncidentCounts,
    ) -> None:
        """Incidents that lost their id: one successor = merged or renamed (members and
        timeline follow, the old id stays as an alias); several = split by a cancel (the
        re-clustered members already carry their new ids)."""
        for old, new_ids in sorted(moves.items()):
            counts.touched.update(new_ids)
            if len(new_ids) == 1:
                (new,) = new_ids
                _move(conn, old, new)
                counts.merged += 1
            conn.execute("DELETE FROM incident WHERE id = %s", (old,))

    def _assign(
        self,
        conn: psycopg.Connection[Any],
        new: Sequence[Report],
        reclustered: Sequence[Report],
        assignment: dict[uuid.UUID, uuid.UUID],
    ) -> None:
        joined = [r for r in new if r.event_id in assignment]
        # Members of an incident a cancel may have split: each goes to its piece.
        moved = [(assignment[r.event_id], r.event_id) for r in reclustered]
        with conn.cursor() as cur:
            # COPY: the batch's reports are new events, so no row can exist yet.
            with cur.copy(_COPY_REPORTS) as copy:
                copy.write(
                    copy_text(
                        (r.event_id, assignment[r.event_id], r.status, r.event_type,
                         r.observed_at, r.pinned)
                        for r in joined
                    )
                )  # fmt: skip
            cur.executemany(
                "UPDATE incident_report SET incident_id = %s WHERE event_id = %s", moved
            )

    def _rebuild(
        self,
        conn: psycopg.Connection[Any],
        stale: Iterable[uuid.UUID],
        fresh: dict[uuid.UUID, list[Report]],
        categories: dict[uuid.UUID, str],
        brand_new: set[uuid.UUID],
    ) -> int:
        """Every touched incident's row from its live members: ``fresh`` ones from the members
        in hand, ``stale`` ones (with stored members not fetched) from the store. ``brand_new``
        incidents (all members arrived in this batch) cannot exist yet. Returns how many
        incidents are new."""
        ids = sorted(stale)
        by_incident: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        if ids:
            for row in self._fetch(conn, _MEMBERS, {"ids": ids}):
                by_incident[row["incident_id"]].append(row)
        summaries, closed = [], []
        for incident in ids:
            rows = by_incident.get(incident, [])
            live = [_report(r, pinned=r["pinned"]) for r in rows if not r["cancelled"]]
            if not live:
                closed.append(incident)
                continue
            categories.update((r["event_id"], r["category"]) for r in rows)
            summaries.append(IncidentSummary.build(incident, live))
        summaries += [IncidentSummary.build(i, reports) for i, reports in sorted(fresh.items())]
        if closed:
            conn.execute(
                "UPDATE incident SET state = 'closed', updated_seq = nextval('incident_update_seq')"
                " WHERE id = ANY(%s)",
                (closed,),
            )
        named = [(s, _category(s, categories)) for s in summaries]
        return _write_rows(conn, named, self._areal, brand_new)


def _in_boxes(rows: list[dict[str, Any]], spans: Sequence[Span]) -> list[dict[str, Any]]:
    """The rows inside the box around the spans of their type (the time was the store's test;
    one box per type keeps this linear, and a superset is all correlation needs)."""
    boxes: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    for b in spans:
        key = (b.status, b.event_type)
        w, s, e, n = boxes.get(key, (b.west, b.south, b.east, b.north))
        boxes[key] = (min(w, b.west), min(s, b.south), max(e, b.east), max(n, b.north))
    out = []
    for r in rows:
        w, s, e, n = boxes[(r["status"], r["event_type"])]
        if w <= r["lon"] <= e and s <= r["lat"] <= n:
            out.append(r)
    return out


_ROW_KINDS = (*REPORT_KINDS, "cancel", "verification")
_PLAIN_POINT_WKB = "0101000000"  # little-endian WKB, type 1 without Z/M/SRID flags


def _frame_rows(batch: Batch) -> list[dict[str, Any]] | None:
    """The rows ``_NEW`` would fetch, from the batch's frame, when every row was inserted and
    every geometry is a plain 2D point (its representative point is then the point itself,
    exactly as PostGIS gives it); None otherwise (the store is asked)."""
    frame = batch.frame
    if frame is None or not batch.all_new:
        return None
    if "geom_wkb" not in frame.columns or "lon" not in frame.columns:
        return None
    if not frame["geom_wkb"].str.starts_with(_PLAIN_POINT_WKB).all():
        return None
    picked = frame.filter(pl.col("kind").is_in(_ROW_KINDS)).sort(["partition", "offset"])
    rows = picked.select(
        "event_id", "event_type", "status", "observed_at", "lon", "lat", "community_id",
        "reporter", "source_system", "source_connector", "severity", "certainty", "refs",
        "category", "kind", "properties",
    ).to_dicts()  # fmt: skip
    for row in rows:
        row["event_id"] = uuid.UUID(row["event_id"])
        row["observed_at"] = datetime.fromisoformat(row["observed_at"])
        row["refs"] = [uuid.UUID(ref) for ref in row["refs"][1:-1].split(",") if ref]
        verdict = row["kind"] == "verification"
        row["properties"] = orjson.loads(row["properties"]) if verdict else None
        row["plain_point"] = True
    return rows


def _follow_pinned(new: list[Report], stored: Sequence[Report]) -> list[Report]:
    """An update of a report an operator split out is pinned too: it joins that report's
    incident (by its refs) and never anything else."""
    pinned = {r.event_id for r in stored if r.pinned}
    if not pinned:
        return new
    return [replace(r, pinned=True) if pinned.intersection(r.refs) else r for r in new]


def _categories(
    conn: psycopg.Connection[Any],
    rows: list[dict[str, Any]],
    fresh: dict[uuid.UUID, list[Report]],
) -> dict[uuid.UUID, str]:
    """CAP categories of the fresh incidents' members: the batch's from its rows, stored ones
    (re-clustered after a cancel or split) from the store."""
    known = {r["event_id"]: r["category"] for r in rows}
    missing = [r.event_id for reports in fresh.values() for r in reports if r.event_id not in known]
    if missing:
        found = conn.execute(
            "SELECT event_id, category FROM event WHERE event_id = ANY(%s)", (missing,)
        ).fetchall()
        known.update(found)
    return known


def _fresh(
    assignment: dict[uuid.UUID, uuid.UUID],
    members: dict[uuid.UUID, Report],
    prior: dict[uuid.UUID, uuid.UUID],
) -> dict[uuid.UUID, list[Report]]:
    """Incidents whose every member is in hand (none was in a stored incident that might have
    more members): most of them, and they need no round trip to the store."""
    groups: defaultdict[uuid.UUID, list[Report]] = defaultdict(list)
    for event_id, incident in assignment.items():
        groups[incident].append(members[event_id])
    with_stored = {incident for event_id, incident in assignment.items() if event_id in prior}
    return {i: reports for i, reports in groups.items() if i not in with_stored}


# --- SQL helpers ------------------------------------------------------------------------------


def _fetch(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _timeline(
    conn: psycopg.Connection[Any],
    incident: uuid.UUID,
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


def _move(conn: psycopg.Connection[Any], old: uuid.UUID, new: uuid.UUID) -> None:
    conn.execute("UPDATE incident_report SET incident_id = %s WHERE incident_id = %s", (new, old))
    conn.execute("UPDATE incident_timeline SET incident_id = %s WHERE incident_id = %s", (new, old))
    conn.execute("UPDATE incident_alias SET incident_id = %s WHERE incident_id = %s", (new, old))
    conn.execute(
        "INSERT INTO incident_alias (alias, incident_id) VALUES (%s, %s)"
        " ON CONFLICT (alias) DO UPDATE SET incident_id = EXCLUDED.incident_id",
        (old, new),
    )
    # A decision on the merged-away incident survives when the survivor has none.
    conn.execute(
        "UPDATE incident n SET verification = o.verification, decided_by = o.decided_by,"
        " decided_at = o.decided_at, decision_reason = o.decision_reason"
        " FROM incident o WHERE n.id = %s AND o.id = %s AND n.decided_at IS NULL"
        " AND o.decided_at IS NOT NULL",
        (new, old),
    )
    _timeline(conn, new, "merged", None, {"from": str(old)})


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
# narrow index of live reports (``_CANDIDATES``) instead of the whole event history.
_COPY_REPORTS = (
    "COPY incident_report (event_id, incident_id, status, event_type, observed_at, pinned)"
    " FROM STDIN"
)

_INCIDENT_COLUMNS = (
    "id, status, category, event_type, severity, certainty, verification, sources, reports,"
    " communities, first_observed_at, last_observed_at"
)
# updated_seq comes from the column's default (the sequence), state 'open' likewise.
_COPY_INCIDENTS = f"COPY incident ({_INCIDENT_COLUMNS}, geom) FROM STDIN"

_COPY_STAGE = f"COPY incident_stage ({_INCIDENT_COLUMNS}, members, geom) FROM STDIN"


def _category(summary: IncidentSummary, categories: dict[uuid.UUID, str]) -> str:
    """The CAP category of the earliest member (event types are the hub's own words)."""
    return next(categories[m] for m in summary.members if m in categories)


def _hulls(summaries: Sequence[tuple[IncidentSummary, str]], areal: set[uuid.UUID]) -> list[Any]:
    """Each incident's geometry as hex WKB when its members are all 2D points (their point,
    or their convex hull, as ST_ConvexHull gives it), else None (PostGIS builds it)."""
    plain = [i for i, (s, _) in enumerate(summaries) if areal.isdisjoint(s.members)]
    coords = [s.points for s, _ in (summaries[i] for i in plain)]
    counts = np.fromiter((len(c) for c in coords), dtype=np.int64, count=len(coords))
    flat = np.array([p for c in coords for p in c], dtype=float).reshape(-1, 2)
    hulls = shapely.convex_hull(
        shapely.multipoints(flat, indices=np.repeat(np.arange(len(coords)), counts))
    )
    out: list[Any] = [None] * len(summaries)
    for i, wkb in zip(plain, shapely.to_wkb(hulls, hex=True), strict=True):
        out[i] = wkb
    return out


def _write_rows(
    conn: psycopg.Connection[Any],
    summaries: Sequence[tuple[IncidentSummary, str]],
    areal: set[uuid.UUID],
    brand_new: set[uuid.UUID],
) -> int:
    """The incident rows: brand-new ones of plain points by COPY straight into the table (no
    conflict is possible), the others staged by COPY and upserted in one statement (hulls
    with areas by PostGIS). Returns how many incidents are new."""
    if not summaries:
        return 0
    hulls = _hulls(summaries, areal)
    direct = [
        _row(s, category, hull)
        for (s, category), hull in zip(summaries, hulls, strict=True)
        if hull is not None and s.incident_id in brand_new
    ]
    staged = [
        (*_row(s, category, None)[:-1], list(s.members), hull)
        for (s, category), hull in zip(summaries, hulls, strict=True)
        if hull is None or s.incident_id not in brand_new
    ]
    with conn.cursor() as cur:
        if direct:
            with cur.copy(_COPY_INCIDENTS) as copy:
                copy.write(copy_text(direct))
        if not staged:
            return len(direct)
        with cur.copy(_COPY_STAGE) as copy:
            for row in staged:
                copy.write_row(row)
        created = cur.execute(_UPSERT).fetchall()
        cur.execute("TRUNCATE incident_stage")  # a second batch in one transaction starts empty
    return len(direct) + sum(1 for (new,) in created if new)


# COPY's text format: backslash, tab and line breaks escaped; NULL as \N. Arrays as literals.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    format_ = _FORMATS.get(type(value))
    return format_(value) if format_ is not None else str(value).translate(_COPY_ESCAPES)


def _copy_array(values: list[Any] | tuple[Any, ...]) -> str:
    return ("{" + ",".join(_array_item(v) for v in values) + "}").translate(_COPY_ESCAPES)


# By exact type (a dict lookup, not a chain of isinstance: ~10 fields a row, 10k rows a batch).
_FORMATS: dict[type, Callable[[Any], str]] = {
    uuid.UUID: str,  # hex and dashes: nothing to escape
    int: str,
    float: repr,
    bool: lambda v: "t" if v else "f",
    type(None): lambda _: "\\N",
    datetime: datetime.isoformat,
    list: _copy_array,
    tuple: _copy_array,
}


def _array_item(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def copy_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as COPY text (uuids, text, numbers, bools, timestamps, flat arrays, None): one
    string for one write, instead of a Python call per value (``Copy.write_row``)."""
    return "".join("\t".join(map(_copy_field, row)) + "\n" for row in rows)


def _row(s: IncidentSummary, category: str, hull: Any) -> tuple[Any, ...]:
    """An incident row in the order of ``_COPY_INCIDENTS``."""
    return (
        s.incident_id,
        s.status,
        category,
        s.event_type,
        s.severity,
        s.certainty,
        s.verification,
        s.sources,
        len(s.members),
        list(s.communities),
        s.first_observed_at,
        s.last_observed_at,
        hull,
    )
