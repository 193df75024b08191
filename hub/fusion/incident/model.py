"""The incident model, stated on single reports: which reports describe the same real-world
incident, and what the incident is.

No database: fusion fetches the stored reports a batch could link to, clusters them with the
batch, and writes the result in its transaction. This module states the model on single
reports (``Report``, ``could_link``, ``select_candidates``, the verification rule); ``links``,
``partition`` and ``summaries`` compute it on polars frames of thousands of reports at once, and
``reference`` runs them on ``Report`` objects (``cluster``, ``IncidentSummary``), so the
properties tested on reports hold for the frames fusion uses. Ids: ``ids``.

The model
---------
Two reports LINK when (``could_link``): they belong to the same picture (``status``), neither is
cancelled, and either one ``refs`` the other and both or neither are pinned (an update joins
what it updates, whatever the distance or time; fusion pins an update of a report an operator
split out, so it stays with that report), or neither is pinned, their types are compatible
(``Rules.limits``) and they lie within the pair's distance and time window.

The connected components of the link graph are the LINKED NEIGHBOURHOODS. They chain (A links
B, B links C), so they are not the incidents: ``partition`` cuts each into incidents by a seeded
assignment in a canonical order (seed ids: observed time first), every member within its
pair's distance and window of the incident's seed (refs exempt), so any two members within
twice that, however dense the reports. The result is a function of the set of reports, not of
their arrival order.

Distances: ``geodesy`` (great-circle, mean-radius sphere, ``SPHEROID_MARGIN`` for
spheroidal candidate queries).

Incremental clustering (the invariant fusion relies on)
-------------------------------------------------------
Let S be the stored reports and B a new batch. Fetch the stored reports that could link to a
live report of B (``select_candidates`` is the reference; fusion fetches a superset), then
EVERY live member of the neighbourhoods they are in (``neighbourhoods``). Then ``cluster`` of
those and B gives every one of them the incident that ``cluster(S + B)`` gives it, and every
other stored report keeps its incident.

Why it holds: a link depends on the pair alone, so the neighbourhoods of S are closed under
links among stored reports; B's reports link to stored ones only directly, so the neighbourhoods
of S + B are those of S untouched by B, and the unions of B with the touched ones, all in hand.
A neighbourhood's incidents depend on its own reports alone. Removing a link (a report
cancelled or pinned) may split a neighbourhood: fetch all of its members, as for growth.
Changed rules change links among stored reports: recluster everything (``recluster``).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from hub.fusion.incident.geodesy import EARTH_RADIUS_M, hav, hav_limit, metres
from hub.fusion.incident.geodesy import SPHEROID_MARGIN as SPHEROID_MARGIN  # re-exported
from hub.fusion.incident.ids import millis, seed_text
from hub.fusion.rules import Rules
from schemas.event import Certainty, Severity, Status
from schemas.picture import CERTAINTY_ORDER, NOT_CREDIBLE, SEVERITY_ORDER, Decision, Verification

_SEVERITY_RANK = {word: -i for i, word in enumerate(SEVERITY_ORDER)}  # higher = more severe
_CERTAINTY_RANK = {word: -i for i, word in enumerate(CERTAINTY_ORDER)}
_STATUSES = frozenset(get_args(Status))


@dataclass(frozen=True, slots=True)
class Report:
    """One report as correlation sees it (an incident, alert or observation event)."""

    event_id: uuid.UUID
    event_type: str
    status: Status  # the picture: reports of different pictures never link
    observed_at: datetime  # timezone-aware
    lon: float  # WGS 84; the representative point of the event's geometry
    lat: float
    community_id: str | None
    source_key: str  # see ``source_key``
    severity: Severity = "Unknown"
    certainty: Certainty = "Unknown"
    pinned: bool = False  # split out by an operator: its own incident forever
    refs: tuple[uuid.UUID, ...] = ()  # the event ids it updates
    cancelled: bool = False  # a cancel event refs it: it links to nothing and counts for nothing

    def __post_init__(self) -> None:
        if self.observed_at.utcoffset() is None:
            raise ValueError(f"report {self.event_id}: observed_at must be timezone-aware")
        if self.status not in _STATUSES:
            raise ValueError(f"report {self.event_id}: status {self.status!r} is not a picture")
        if self.severity not in _SEVERITY_RANK or self.certainty not in _CERTAINTY_RANK:
            raise ValueError(f"report {self.event_id}: severity and certainty are CAP words")
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"report {self.event_id}: ({self.lon}, {self.lat}) is not WGS 84")


# --- the link rule ----------------------------------------------------------------------------


def distance_m(a: Report, b: Report) -> float:
    """Great-circle distance (haversine on the mean-radius sphere)."""
    return metres(
        hav(math.radians(a.lat), math.radians(a.lon), math.radians(b.lat), math.radians(b.lon))
    )


def could_link(a: Report, b: Report, rules: Rules) -> bool:
    """Whether ``a`` and ``b`` link directly (the edge of the incident graph)."""
    if a.event_id == b.event_id or a.cancelled or b.cancelled or a.status != b.status:
        return False
    if b.event_id in a.refs or a.event_id in b.refs:
        # An update stays on its side of an operator's split: with the report split out when
        # it updates that one (fusion pins it too), else with the unpinned ones.
        return a.pinned == b.pinned
    if a.pinned or b.pinned:
        return False
    limits = rules.limits(a.event_type, b.event_type)
    if limits is None:
        return False
    if abs(a.observed_at.timestamp() - b.observed_at.timestamp()) > limits.window.total_seconds():
        return False
    phi_a, phi_b = math.radians(a.lat), math.radians(b.lat)
    if abs(phi_b - phi_a) > limits.distance_m / EARTH_RADIUS_M:  # as the loop's cheap rejection
        return False
    h = hav(phi_a, math.radians(a.lon), phi_b, math.radians(b.lon))
    return h <= hav_limit(limits.distance_m)


# --- incident ids -----------------------------------------------------------------------------


def seed_id(report: Report) -> uuid.UUID:
    """The id of an incident whose earliest member is ``report`` (see the module doc)."""
    ms = millis(report.observed_at.timestamp())
    return uuid.UUID(seed_text(str(report.event_id), report.pinned, ms))


# --- clustering -------------------------------------------------------------------------------


def successors(
    prior: Mapping[uuid.UUID, uuid.UUID], assignment: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, frozenset[uuid.UUID]]:
    """Prior incidents that no longer exist -> the incidents their clustered members are in now.

    One successor: the incident merged into (or was renamed to) it; the caller moves its other
    stored members there and keeps the old id as an alias. Several: it split (recomputed).
    An incident whose clustered members were all cancelled is absent: the caller knows them.
    """
    alive = set(assignment.values())
    out: defaultdict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for event_id, old in prior.items():
        new = assignment.get(event_id)
        if new is not None and old not in alive:
            out[old].add(new)
    return {old: frozenset(new) for old, new in out.items()}


# --- what the caller fetches ------------------------------------------------------------------


def select_candidates(
    stored: Iterable[Report], batch: Sequence[Report], rules: Rules
) -> list[Report]:
    """The stored reports that link directly to a report of ``batch``: the reference of the
    PostGIS query (module doc); a superset is also correct, a subset is not.
    O(stored x batch): for tests and small sets."""
    new = {r.event_id for r in batch}
    return [
        s for s in stored if s.event_id not in new and any(could_link(s, b, rules) for b in batch)
    ]


# --- verification -----------------------------------------------------------------------------


def independent_sources(reports: Iterable[Report]) -> int:
    """The number of distinct sources among the live reports."""
    return len({r.source_key for r in reports if not r.cancelled})


def verification_state(sources: int, decision: Decision | None = None) -> Verification:
    """A principal's decision wins; otherwise two or more independent sources corroborate.
    ``sources`` counts sources that AGREE (``summaries.agreeing``): inside one incident's
    extent two emergencies may meet, and must not vouch for each other."""
    if decision is not None:
        return decision
    return "corroborated" if sources >= 2 else "reported"


def severity_of(reports: Iterable[Report]) -> Severity:
    """The highest severity among credible live reports (certainty above Unlikely/Unknown);
    when none is credible, the highest overall; ``Unknown`` for none at all."""
    live = [r for r in reports if not r.cancelled]
    credible = [r for r in live if r.certainty not in NOT_CREDIBLE]
    pool = credible or live
    return max((r.severity for r in pool), key=_SEVERITY_RANK.__getitem__, default="Unknown")
