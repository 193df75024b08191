"""The incident model on single reports, computed by the column code.

``cluster``, ``neighbourhoods`` and ``IncidentSummary.build`` take ``model.Report`` objects and
run ``links.correlate_frame`` and ``summaries.summarise`` on a frame of them, so the properties
tested on reports hold for the frames fusion uses. For tests, benchmarks and small sets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from hub.fusion.incident.links import correlate_frame, report_frame
from hub.fusion.incident.model import Report
from hub.fusion.incident.summaries import summarise
from hub.fusion.rules import Rules
from schemas.event import Certainty, Severity, Status
from schemas.picture import Decision, Verification


def cluster(reports: Iterable[Report], rules: Rules) -> dict[uuid.UUID, uuid.UUID]:
    """event_id -> incident id for every live report (cancelled ones belong to no incident):
    the neighbourhoods, each partitioned (module doc). The work is ``links.correlate_frame``'s,
    on columns."""
    return _by_report(reports, rules, "incident")


def neighbourhoods(reports: Iterable[Report], rules: Rules) -> dict[uuid.UUID, uuid.UUID]:
    """event_id -> the linked neighbourhood (its smallest seed) of every live report."""
    return _by_report(reports, rules, "component")


def _by_report(reports: Iterable[Report], rules: Rules, column: str) -> dict[uuid.UUID, uuid.UUID]:
    unique = _unique(reports)
    labels = correlate_frame(report_frame(unique), rules)[column]
    return {
        r.event_id: uuid.UUID(label)
        for r, label in zip(unique, labels, strict=True)
        if label is not None
    }


def _unique(reports: Iterable[Report]) -> list[Report]:
    # Stored and new sets may overlap (a re-sent event); a conflicting copy is a caller's bug
    # that would otherwise make the result depend on which copy came first.
    seen: dict[uuid.UUID, Report] = {}
    for r in reports:
        other = seen.setdefault(r.event_id, r)
        if other is not r and other != r:
            raise ValueError(f"two different reports with event_id {r.event_id}")
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """What the incident row holds, computed from its members (geometry is PostGIS's: the hull
    of ``points``)."""

    incident_id: uuid.UUID
    status: Status
    event_type: str
    severity: Severity
    certainty: Certainty
    first_observed_at: datetime
    last_observed_at: datetime
    communities: tuple[str, ...]  # sorted
    sources: int
    verification: Verification
    members: tuple[uuid.UUID, ...]  # by observed_at, then event_id
    points: tuple[tuple[float, float], ...]  # (lon, lat), in the order of members

    @classmethod
    def build(
        cls,
        incident_id: uuid.UUID,
        reports: Iterable[Report],
        decision: Decision | None = None,
        rules: Rules | None = None,
    ) -> IncidentSummary:
        """The summary of the live ``reports`` (cancelled ones are left out); the work is
        ``summaries.summarise``'s, on columns."""
        frame = report_frame(_unique(reports)).with_columns(
            pl.lit(str(incident_id)).alias("incident"), pl.lit(None, pl.String).alias("category")
        )
        rows = summarise(frame, rules or Rules.load()).to_dicts()
        if not rows:
            raise ValueError(f"incident {incident_id} has no live report")
        (row,) = rows
        return cls(
            incident_id=incident_id,
            status=row["status"],
            event_type=row["event_type"],
            severity=row["severity"],
            certainty=row["certainty"],
            first_observed_at=row["first_observed_at"],
            last_observed_at=row["last_observed_at"],
            communities=tuple(row["communities"]),
            sources=row["sources"],
            verification=decision or row["verification"],
            members=tuple(uuid.UUID(m) for m in row["members"]),
            points=tuple(zip(row["lon"], row["lat"], strict=True)),
        )
