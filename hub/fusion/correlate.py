"""Correlation: which reports describe the same real-world incident, and what the incident is.

No database: fusion fetches the stored reports a batch could link to, clusters them with the
batch, and writes the result in its transaction. This module is the model, stated on single
reports (``Report``, ``could_link``, ``cluster``, ``IncidentSummary``); ``hub.fusion.links`` and
``hub.fusion.summaries`` compute the same on polars frames of thousands of reports at once, and
``cluster`` and ``IncidentSummary.build`` here are thin wrappers around them (so the properties
tested on reports hold for the frames fusion uses).

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

Distances: ``hub.fusion.geometry`` (great-circle, mean-radius sphere, ``SPHEROID_MARGIN`` for
spheroidal candidate queries).

Incident ids
------------
Every report has a seed id (``seed_id``): a UUIDv8 whose first 48 bits are its observed_at in
Unix milliseconds and whose other bits come from uuid5(NAMESPACE, event_id). An incident's id is
the seed of its first report in the canonical order, which is its smallest seed. Ids order by
time, so an incident is named after its EARLIEST report; a late report observed before all of
an incident's members may take over and rename it (the old id stays as an alias). A pinned
report's seed is derived from ``"pinned:" + event_id``, so an operator's split never hands the
incident's own id to the report split out of it.

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

import functools
import hashlib
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args
from urllib.parse import quote

import numpy as np

from hub.fusion.geometry import EARTH_RADIUS_M, hav, hav_limit, metres
from hub.fusion.geometry import SPHEROID_MARGIN as SPHEROID_MARGIN  # re-exported
from hub.fusion.rules import Rules
from schemas.event import Certainty, Severity, Status
from schemas.picture import CERTAINTY_ORDER, NOT_CREDIBLE, SEVERITY_ORDER, Decision, Verification

NAMESPACE = uuid.UUID("0b8f3d6e-7a41-5c2e-9f10-4d6a8c2b1e57")

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


def millis(timestamp: float) -> int:
    """The millisecond of a seed (clipped to the 48 bits it has)."""
    return min(max(math.floor(timestamp * 1000), 0), (1 << 48) - 1)


def seed_text(event_id: str, pinned: bool, ms: int) -> str:
    """``seed_id`` of a report given as its canonical id text and its millisecond."""
    return seed_texts([event_id], [pinned], np.array([ms], dtype=np.int64))[0]


def seed_texts(event_ids: Sequence[str], pinned: Sequence[bool], ms: np.ndarray) -> list[str]:
    """``seed_text`` of many reports: one hash each, the bits laid out in bulk."""
    names = (f"pinned:{e}" if p else e for e, p in zip(event_ids, pinned, strict=True))
    # uuid5's hash (SHA-1 of namespace + name), without building the intermediate UUID: only
    # bits that uuid5 leaves alone (it overwrites version and variant) are used.
    ns = NAMESPACE.bytes
    digest = b"".join(hashlib.sha1(ns + name.encode()).digest()[:16] for name in names)
    out = np.frombuffer(digest, dtype=np.uint8).reshape(-1, 16).copy()
    # RFC 9562 UUIDv8 layout: 48 bits time | version 8 | 12 bits | variant 0b10 | 62 bits.
    out[:, :6] = ms.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]
    out[:, 6] = 0x80 | (out[:, 6] & 0x0F)
    out[:, 8] = 0x80 | (out[:, 8] & 0x3F)
    h = out.tobytes().hex()
    return [
        f"{h[k : k + 8]}-{h[k + 8 : k + 12]}-{h[k + 12 : k + 16]}-{h[k + 16 : k + 20]}-"
        + h[k + 20 : k + 32]
        for k in range(0, len(h), 32)
    ]


# --- clustering -------------------------------------------------------------------------------


def cluster(reports: Iterable[Report], rules: Rules) -> dict[uuid.UUID, uuid.UUID]:
    """event_id -> incident id for every live report (cancelled ones belong to no incident):
    the neighbourhoods, each partitioned (module doc). The work is ``links.correlate_frame``'s,
    on columns."""
    return _by_report(reports, rules, "incident")


def neighbourhoods(reports: Iterable[Report], rules: Rules) -> dict[uuid.UUID, uuid.UUID]:
    """event_id -> the linked neighbourhood (its smallest seed) of every live report."""
    return _by_report(reports, rules, "component")


def _by_report(reports: Iterable[Report], rules: Rules, column: str) -> dict[uuid.UUID, uuid.UUID]:
    from hub.fusion.links import correlate_frame, report_frame  # it builds on this module

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


def source_key(
    reporter: str | None, system: str, community_id: str | None, signed_sensor: bool = False
) -> str:
    """Who stands behind a report, for counting independent sources.

    A person's pseudonym counts per community (``r:<community>:<reporter>``); a trusted signed
    sensor counts per sensor (``k:<system>:<sensor id>``, the id in ``reporter``); anything
    else is the automated system itself (``s:<system>``): the same system twice is one source,
    however many rows it sends. Parts are percent-escaped so that no two keys collide.
    """
    if signed_sensor:
        if not reporter:
            raise ValueError("a signed sensor needs its sensor id (the reporter field)")
        return f"k:{esc(system)}:{esc(reporter)}"
    if reporter:
        return f"r:{esc(community_id or '')}:{esc(reporter)}"
    return f"s:{esc(system)}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is


@functools.lru_cache(maxsize=1 << 16)  # the same systems and reporters, batch after batch
def esc(part: str) -> str:
    return part if _UNRESERVED.fullmatch(part) else quote(part, safe="")


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


# --- the incident as a whole ------------------------------------------------------------------


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
        import polars as pl

        from hub.fusion.links import report_frame  # they build on this module
        from hub.fusion.summaries import summarise

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
