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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
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

log = logging.getLogger(__name__)

REPORT_KINDS = ("incident", "alert")

# The columns a Report is built from (``_report``), for new and stored events alike.
_REPORT_COLUMNS = """
    e.event_id, e.event_type, e.status, e.observed_at,
    ST_X(ST_PointOnSurface(e.geom)) AS lon, ST_Y(ST_PointOnSurface(e.geom)) AS lat,
    e.community_id, e.reporter, e.source_system, e.severity, e.certainty, e.refs,
    e.category, e.kind
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
# scan of incident_report's reach index, then the event by its key and a box test.
_CANDIDATES = f"""
SELECT DISTINCT ON (e.event_id) {_REPORT_COLUMNS}, r.incident_id
FROM unnest(%(status)s::text[], %(event_type)s::text[], %(start)s::timestamptz[],
            %(end)s::timestamptz[], %(west)s::float8[], %(south)s::float8[],
            %(east)s::float8[], %(north)s::float8[])
     AS s(status, event_type, t0, t1, west, south, east, north)
JOIN incident_report r ON r.status = s.status AND r.event_type = s.event_type
    AND r.observed_at BETWEEN s.t0 AND s.t1 AND NOT r.cancelled AND NOT r.pinned
JOIN event e ON e.event_id = r.event_id
    AND e.geom && ST_MakeEnvelope(s.west, s.south, s.east, s.north, 4326)
"""

# Linked by refs, both ways: what the batch's reports update (by id), and stored reports that
# update one of the batch's (sent before it: out of order). Two index scans (pkey, GIN on refs).
_BY_REFS = f"""
SELECT {_REPORT_COLUMNS}, r.incident_id
FROM event e JOIN incident_report r ON r.event_id = e.event_id
WHERE NOT r.cancelled AND NOT r.pinned AND e.event_id = ANY(%(refs)s)
UNION
SELECT {_REPORT_COLUMNS}, r.incident_id
FROM event e JOIN incident_report r ON r.event_id = e.event_id
WHERE NOT r.cancelled AND NOT r.pinned AND e.refs <> '{{}}' AND e.refs && %(ids)s
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

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_CREATE_STAGE)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> IncidentCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``."""
        counts = self._apply(conn)
        if batch is not None:
            batch.changed_incidents |= counts.touched
        return counts

    def _apply(self, conn: psycopg.Connection[Any]) -> IncidentCounts:
        counts = IncidentCounts()
        rows = _fetch(conn, _NEW, {"kinds": list(REPORT_KINDS)})
        new = _reports([r for r in rows if r["kind"] in REPORT_KINDS])
        cancelled_ids = [ref for r in rows if r["kind"] == "cancel" for ref in (r["refs"] or ())]
        decisions = [Decision.of(r) for r in rows if r["kind"] == "verification"]
        reclustered = self._cancel(conn, cancelled_ids, counts)
        reclustered += self._split(conn, [d for d in decisions if d.decision == "split"], counts)
        judged = [d for d in decisions if d.decision in ("verified", "refuted")]
        if not new and not reclustered:
            self._decide(conn, judged, counts)
            return counts
        counts.reports = len(new)
        prior, stored = self._candidates(conn, new)
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
        counts.created = self._rebuild(conn, stale, fresh, categories)
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
            for r in _fetch(conn, _MEMBERS, {"ids": incidents})
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
            for r in _fetch(conn, _MEMBERS, {"ids": incidents})
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
            params = {field: [getattr(span, field) for span in spans] for field in Span.__slots__}
            rows = _fetch(conn, _CANDIDATES, params)
        if new:
            refs = [ref for r in new for ref in r.refs]
            rows += _fetch(conn, _BY_REFS, {"refs": refs, "ids": [r.event_id for r in new]})
        prior = {r["event_id"]: r["incident_id"] for r in rows}
        return prior, [_report(r) for r in rows]

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
                for r in joined:
                    copy.write_row(
                        (r.event_id, assignment[r.event_id], r.status, r.event_type, r.observed_at)
                    )
            with cur.copy(
                "COPY incident_timeline (incident_id, at, what, event_id) FROM STDIN"
            ) as copy:
                for r in joined:
                    copy.write_row(
                        (assignment[r.event_id], r.observed_at, "report_joined", r.event_id)
                    )
            cur.executemany(
                "UPDATE incident_report SET incident_id = %s WHERE event_id = %s", moved
            )

    def _rebuild(
        self,
        conn: psycopg.Connection[Any],
        stale: Iterable[uuid.UUID],
        fresh: dict[uuid.UUID, list[Report]],
        categories: dict[uuid.UUID, str],
    ) -> int:
        """Every touched incident's row from its live members: ``fresh`` ones from the members
        in hand, ``stale`` ones (with stored members not fetched) from the store. Returns how
        many incidents are new."""
        ids = sorted(stale)
        by_incident: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        if ids:
            for row in _fetch(conn, _MEMBERS, {"ids": ids}):
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
        return _upsert(conn, [(s, _category(s, categories)) for s in summaries])


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
    timestamptz, last_observed_at timestamptz, members uuid[]
) ON COMMIT DELETE ROWS
"""

_UPSERT = """
INSERT INTO incident AS i (id, status, state, category, event_type, severity, certainty,
    verification, sources, reports, communities, first_observed_at, last_observed_at, geom,
    updated_seq)
SELECT s.id, s.status, 'open', s.category, s.event_type, s.severity, s.certainty,
    s.verification, s.sources, s.reports, s.communities, s.first_observed_at,
    s.last_observed_at, g.geom, nextval('incident_update_seq')
FROM incident_stage s
CROSS JOIN LATERAL (
    -- one report: its geometry; more: the hull (a line when all lie on one)
    SELECT CASE WHEN cardinality(s.members) = 1
        THEN (SELECT e.geom FROM event e WHERE e.event_id = s.members[1])
        ELSE (SELECT ST_ConvexHull(ST_Collect(e.geom)) FROM event e
              WHERE e.event_id = ANY(s.members)) END
) AS g(geom)
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
    "COPY incident_report (event_id, incident_id, status, event_type, observed_at) FROM STDIN"
)

_COPY_STAGE = (
    "COPY incident_stage (id, status, category, event_type, severity, certainty, verification,"
    " sources, reports, communities, first_observed_at, last_observed_at, members) FROM STDIN"
)


def _category(summary: IncidentSummary, categories: dict[uuid.UUID, str]) -> str:
    """The CAP category of the earliest member (event types are the hub's own words)."""
    return next(categories[m] for m in summary.members if m in categories)


def _upsert(conn: psycopg.Connection[Any], summaries: Sequence[tuple[IncidentSummary, str]]) -> int:
    """All rows in one statement: staged by COPY, hulls computed by PostGIS; returns how many
    incidents are new."""
    if not summaries:
        return 0
    with conn.cursor() as cur:
        with cur.copy(_COPY_STAGE) as copy:
            for s, category in summaries:
                copy.write_row(
                    (
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
                        list(s.members),
                    )
                )
        created = cur.execute(_UPSERT).fetchall()
        cur.execute("TRUNCATE incident_stage")  # a second batch in one transaction starts empty
    return sum(1 for (new,) in created if new)
