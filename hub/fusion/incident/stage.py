"""The incident stage of fusion: the batch's new reports joined into incidents, in the batch's
transaction (so a crash or a replay gives the same incidents).

Per batch:
1. the new reports (events of kind incident/alert: ``report_rows``), the cancels of earlier
   reports and the operators' decisions (``decisions``);
2. the stored neighbourhoods the batch may touch: those of the stored reports inside
   ``links.candidate_spans`` and of the reports linked by refs, every live member of them,
   with the incident each is in (``prior``); a cancel or a split adds its neighbourhood;
3. ``links.correlate_frame``: the neighbourhoods and their incidents (``partition``);
   incidents that lost their id leave an alias to where most of their reports went;
4. every changed incident's row is rebuilt from its live members (``incident_rows``), and the
   timeline records what happened; decisions land last, on the final ids.

Reports travel as polars frames (``links.REPORT_SCHEMA``, ids as canonical text) from the batch
or the store to the rows written by COPY: a batch's thousands of reports never become Python
objects one by one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl
import psycopg

from hub.fusion.incident.cache import NeighbourhoodCache
from hub.fusion.incident.decisions import Decision, current_id, decisions_of
from hub.fusion.incident.incident_rows import CREATE_STAGE, write_rows
from hub.fusion.incident.linking import Linked, link
from hub.fusion.incident.links import candidate_spans
from hub.fusion.incident.report_rows import (
    BY_REFS,
    EMPTY_REPORTS,
    IN_SPANS,
    NEIGHBOURS,
    NEW_ROWS,
    NEW_SCHEMA,
    REPORT_KINDS,
    ROW_KINDS,
    SPAN_BOX,
    SPAN_TEXT,
    STORED_SCHEMA,
    as_reports,
    frame_rows,
    rows_of,
)
from hub.fusion.incident.stage_sql import (
    ANY_PENDING,
    CANCEL,
    COPY_REPORTS,
    MERGES,
    MOVE_REPORTS,
    PEND_CANCELS,
    TAKE_PENDING,
    timeline,
)
from hub.fusion.rules import Rules
from hub.fusion.stages import Batch
from hub.store.frames import copy_frame, pg_array, pg_array_of, read_frame

log = logging.getLogger(__name__)


@dataclass
class IncidentCounts:
    reports: int = 0
    created: int = 0
    merged: int = 0
    cancelled: int = 0
    touched: set[str] = field(default_factory=set)  # incident ids, canonical text
    vacated: set[tuple[str, str]] = field(default_factory=set)  # (status, grid cell) cancelled


class IncidentStage:
    """Applies one batch's new events to the incidents (not thread-safe: one per sink)."""

    name = "incidents"

    def __init__(self, rules: Rules, cache: NeighbourhoodCache | None = None) -> None:
        self.rules = rules
        self.cache = cache  # the neighbourhoods of recent batches (the worker's stage only)

    def before_commit(self, conn: psycopg.Connection[Any]) -> None:
        if self.cache is not None:
            self.cache.before_commit(conn)

    def after_commit(self, committed: bool) -> None:
        if self.cache is not None:
            self.cache.after_commit(committed)

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(CREATE_STAGE)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> IncidentCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``."""
        counts = self._apply(conn, batch)
        if batch is not None:
            batch.changed_incidents |= counts.touched
            batch.vacated_cells |= counts.vacated
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
            started = time.perf_counter()
            rows = rows_of(frame)
            if rows is None:
                return None
            rows = rows.filter(~pl.col("event_id").is_in(_stored_ids(reader, rows)))
            new = as_reports(rows)
            if self.cache is not None:
                self.cache.check(reader)
            stored = self._candidates(reader, new, cached=True)
            read = time.perf_counter()
            linked = link(new, stored, EMPTY_REPORTS, set(), self.rules)
            linked = replace(linked, batch_ids=frozenset(rows["event_id"].to_list()))
            log.debug(
                "incidents planned",
                extra={
                    "new": new.height,
                    "neighbours": stored.height,
                    "read_ms": round(1000 * (read - started), 1),
                    "link_ms": round(1000 * (time.perf_counter() - read), 1),
                    **(self.cache.figures() if self.cache is not None else {}),
                },
            )
            return linked

        return job

    def recluster(self, conn: psycopg.Connection[Any], stored: pl.DataFrame) -> IncidentCounts:
        """Partition ``stored`` (every live report, with its incident and neighbourhood) again
        under this stage's rules and write what changed (``hub.fusion.recluster``)."""
        counts = IncidentCounts()
        self._write(conn, link(EMPTY_REPORTS, stored, EMPTY_REPORTS, set(), self.rules), counts)
        return counts

    def _apply(self, conn: psycopg.Connection[Any], batch: Batch | None) -> IncidentCounts:
        counts = IncidentCounts()
        judged: list[Decision]
        targets: set[str] = set()  # what the batch's cancels cancel
        planned = batch.plans.get(self.name) if batch is not None else None
        if isinstance(planned, Linked) and _planned_for(planned, batch):  # no cancels in it
            linked, judged = planned, []
            counts.reports = len(linked.arrived)
        elif (found := self._link_batch(conn, batch, counts)) is not None:  # from the store
            linked, judged, targets = found
        else:
            return counts
        self._write(conn, linked, counts)
        self._cancel_arrived(conn, linked, targets, counts)
        self._decide(conn, judged, counts)  # after the rebuild: a decision lands on the final ids
        return counts

    def _cancel_arrived(
        self,
        conn: psycopg.Connection[Any],
        linked: Linked,
        targets: set[str],
        counts: IncidentCounts,
    ) -> None:
        """Cancels of reports that had no membership when the first pass ran: of this very
        batch (``targets``), or sent before their report (``pending_cancel``). Applied now, as
        a later batch would: the picture depends on the set of reports, not on how they were
        cut or ordered."""
        late = targets & linked.arrived
        if linked.arrived and conn.execute(ANY_PENDING).fetchone() == (True,):
            taken = conn.execute(TAKE_PENDING, (pg_array(sorted(linked.arrived)),)).fetchall()
            late |= {ref for (ref,) in taken}
        if late:
            self._cancel_again(conn, sorted(late), counts)

    def _cancel_again(
        self, conn: psycopg.Connection[Any], late: list[str], counts: IncidentCounts
    ) -> None:
        second = IncidentCounts()
        reclustered = self._cancel(conn, late, second)
        again = link(EMPTY_REPORTS, EMPTY_REPORTS, reclustered, set(second.touched), self.rules)
        self._write(conn, again, second)
        counts.cancelled += second.cancelled
        counts.created += second.created
        counts.touched |= second.touched
        counts.vacated |= second.vacated

    def _link_batch(
        self, conn: psycopg.Connection[Any], batch: Batch | None, counts: IncidentCounts
    ) -> tuple[Linked, list[Decision], set[str]] | None:
        """Without a plan: the batch's rows (from the frame or the store), cancels and splits
        applied, candidates read, correlation computed. None when only decisions were left
        (applied here)."""
        rows = _batch_rows(conn, batch)
        new = as_reports(rows.filter(pl.col("kind").is_in(REPORT_KINDS)))
        pairs = rows.filter(pl.col("kind") == "cancel").select("event_id", "refs")
        pairs = pairs.explode("refs").drop_nulls()
        cancels = pairs["refs"]
        if pairs.height:  # a cancel whose report is not stored at all waits for it
            params = {"refs": pg_array(cancels), "cancels": pg_array(pairs["event_id"])}
            conn.execute(PEND_CANCELS, params)
        verdicts = rows.filter(pl.col("kind") == "verification")
        decisions = decisions_of(verdicts.to_dicts()) if verdicts.height else []
        reclustered = pl.concat(
            [
                self._cancel(conn, cancels.to_list(), counts),
                self._split(conn, [d for d in decisions if d.decision == "split"], counts),
            ]
        )
        judged = [d for d in decisions if d.decision in ("verified", "refuted")]
        if new.height == 0 and reclustered.height == 0 and not counts.touched:
            self._decide(conn, judged, counts)
            return None  # (a cancel that emptied its neighbourhood goes on: it closes incidents)
        counts.reports = new.height
        stored = self._candidates(conn, new)  # from the store: cancels and splits changed it
        linked = link(new, stored, reclustered, set(counts.touched), self.rules)
        return linked, judged, set(cancels.to_list())

    def _write(self, conn: psycopg.Connection[Any], linked: Linked, counts: IncidentCounts) -> None:
        started = time.perf_counter()
        self._rename(conn, linked.moves, counts)
        renamed = time.perf_counter()
        self._assign(conn, linked)
        assigned = time.perf_counter()
        counts.touched |= linked.touched
        counts.created = self._rebuild(conn, linked)
        if self.cache is not None:
            stored_form = linked.assigned.with_columns(
                pl.col("incident").alias("prior"), pl.col("component").alias("neighbourhood")
            )
            self.cache.stage(linked.replaced, stored_form)
        log.debug(
            "incidents written",
            extra={
                "renamed": len(linked.moves),
                "moved": linked.moved.height,
                "rebuilt": linked.fresh.height,
                "rename_ms": round(1000 * (renamed - started), 1),
                "assign_ms": round(1000 * (assigned - renamed), 1),
                "rebuild_ms": round(1000 * (time.perf_counter() - assigned), 1),
            },
        )

    # --- the steps ----------------------------------------------------------------------

    def _cancel(
        self, conn: psycopg.Connection[Any], ids: list[str], counts: IncidentCounts
    ) -> pl.DataFrame:
        """Mark cancelled reports; return the live members of their neighbourhoods to
        partition again (a cancelled report may have been a seed or a bridge)."""
        if not ids:
            return EMPTY_REPORTS
        hit = conn.execute(CANCEL, (pg_array(ids),)).fetchall()
        counts.cancelled = len(hit)
        for incident, event_id, *_ in hit:
            timeline(conn, incident, "report_cancelled", event_id)
        counts.touched.update(str(incident) for incident, *_ in hit)
        counts.vacated.update((status, cell) for *_, status, cell in hit if cell is not None)
        return self._live_members(conn, sorted({str(c) for _, _, c, *_ in hit}))

    def _split(
        self, conn: psycopg.Connection[Any], splits: list[Decision], counts: IncidentCounts
    ) -> pl.DataFrame:
        """Pin each split-out report (its own incident from now on, never merged again
        automatically); return the live members of its neighbourhood, to partition again."""
        incidents, components = [], []
        for d in splits:
            current = current_id(conn, d.incident_id)
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
            timeline(conn, current, "report_split", d.report_id, d.detail())
            incidents.append(str(current))
            components.append(str(pinned[0]))
        counts.touched.update(incidents)
        return self._live_members(conn, components)

    def _live_members(
        self, conn: psycopg.Connection[Any], neighbourhoods: Sequence[str]
    ) -> pl.DataFrame:
        """Every live member of ``neighbourhoods``, with its incident and neighbourhood."""
        if not neighbourhoods:
            return EMPTY_REPORTS
        ids = pg_array(sorted(set(neighbourhoods)))
        return as_reports(read_frame(conn, NEIGHBOURS, {"ids": ids}, STORED_SCHEMA))

    def _decide(
        self, conn: psycopg.Connection[Any], decisions: list[Decision], counts: IncidentCounts
    ) -> None:
        """Verified or refuted by a principal: who, when, why; it outlasts later reports."""
        for d in decisions:
            current = current_id(conn, d.incident_id)
            if current is None:
                log.warning("decision on unknown incident %s ignored", d.incident_id)
                continue
            conn.execute(
                "UPDATE incident SET verification = %s, decided_by = %s, decided_at = %s,"
                " decision_reason = %s, updated_seq = nextval('incident_update_seq')"
                " WHERE id = %s",
                (d.decision, d.by, d.at, d.reason, current),
            )
            timeline(conn, current, d.decision, d.event_id, d.detail())
            counts.touched.add(str(current))

    def _candidates(
        self, conn: psycopg.Connection[Any], new: pl.DataFrame, *, cached: bool = False
    ) -> pl.DataFrame:
        """Every live member of the stored neighbourhoods the batch may touch (``model``
        doc): those of the stored reports that may link to a new one (a superset), and of
        the reports linked to one by refs; ``cached``: those the cache holds from there."""
        found: set[str] = set()
        spans = candidate_spans(self.rules, new)
        if spans.height:
            params = {c: pg_array_of(spans[c]) for c in SPAN_TEXT}
            params |= {c: pg_array(spans[c]) for c in SPAN_BOX}
            found.update(c for (c,) in conn.execute(IN_SPANS, params).fetchall())
        if new.height:
            refs = new["refs"].explode().drop_nulls()
            params = {"refs": pg_array(refs), "ids": pg_array(new["event_id"])}
            found.update(c for (c,) in conn.execute(BY_REFS, params).fetchall())
        if not cached or self.cache is None:
            return self._live_members(conn, sorted(found))
        hit, missing = self.cache.take(sorted(found))
        return pl.concat([hit, self._live_members(conn, missing)])

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
        for statement in MERGES:
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
                COPY_REPORTS,
                joined.select("event_id", "incident", "status", "event_type", "observed_at",
                              "pinned", "component", "lon", "lat"),
            )  # fmt: skip
            moved = linked.moved
            if moved.height:
                cur.execute(
                    MOVE_REPORTS,
                    {c: pg_array(moved[c]) for c in ("event_id", "incident", "component")},
                )

    def _rebuild(self, conn: psycopg.Connection[Any], linked: Linked) -> int:
        """Every changed incident's row from its live members (all in hand); incidents left
        without a live member are closed. Returns how many incidents are new."""
        if linked.closed:  # their cells stay named: the risk stage re-scores them
            conn.execute(
                "UPDATE incident SET state = 'closed', alerts = 0,"
                " updated_seq = nextval('incident_update_seq') WHERE id = ANY(%s::uuid[])",
                (pg_array(linked.closed),),
            )
        rows = linked.fresh
        return write_rows(conn, rows) if rows.height else 0


def _batch_rows(conn: psycopg.Connection[Any], batch: Batch | None) -> pl.DataFrame:
    """The batch's new rows: from its frame, or read back from the store."""
    rows = frame_rows(batch) if batch is not None else None
    if rows is None:
        rows = read_frame(conn, NEW_ROWS, {"kinds": list(REPORT_KINDS)}, NEW_SCHEMA)
    return rows


def _stored_ids(conn: psycopg.Connection[Any], rows: pl.DataFrame) -> list[str]:
    """The ids of ``rows`` already stored (duplicates: the insert will skip them)."""
    found = conn.execute(
        "SELECT event_id::text FROM event WHERE event_id = ANY(%s::uuid[])",
        (pg_array(rows["event_id"]),),
    ).fetchall()
    return [event_id for (event_id,) in found]


def _planned_for(linked: Linked, batch: Batch | None) -> bool:
    """Whether a plan took as new exactly the reports the insert stored: the frame is the
    batch's inserted rows, and no stage added events since."""
    if batch is None or batch.frame is None or not batch.all_new:
        return False
    inserted = batch.frame.filter(pl.col("kind").is_in(ROW_KINDS))["event_id"]
    ids = linked.batch_ids
    return inserted.len() == len(ids) and bool(inserted.is_in(list(ids)).all())
