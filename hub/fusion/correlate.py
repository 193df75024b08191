"""Correlation: which reports describe the same real-world incident, and what the incident is.

Pure Python, no database: fusion fetches the stored reports a batch could link to, calls
``cluster`` on them and the batch, and writes the result in its transaction.

The model
---------
Two reports LINK when (``could_link``): they belong to the same picture (``status``), neither is
cancelled, and either one ``refs`` the other and both or neither are pinned (an update joins
what it updates, whatever the distance or time; fusion pins an update of a report an operator
split out, so it stays with that report), or neither is pinned, their types are compatible
(``Rules.limits``) and they lie within the pair's distance and time window. Incidents are the
connected components of the link graph (single linkage): a set, so the result cannot depend on
the order of arrival.

Distances are great-circle distances on a sphere of radius 6,371,008.8 m (the mean Earth
radius). Against the WGS 84 ellipsoid this errs by at most ~0.56 % (at SF's latitude ~0.25 %):
under 2 m at 300 m, far below GPS and geocoding noise. A candidate query with PostGIS geography
(spheroidal) pads its distance by ``SPHEROID_MARGIN`` so it never misses a pair the sphere links.

Incident ids
------------
Every report has a seed id (``seed_id``): a UUIDv8 whose first 48 bits are its observed_at in
Unix milliseconds and whose other bits come from uuid5(NAMESPACE, event_id). An incident's id is
the smallest seed among its members. This is deterministic and order-independent, and since
ids order by time, an incident is named after its EARLIEST report: a merge keeps the older
incident's id (the other becomes an alias, ``successors``), and a new report renames an
incident only when it was observed before all its members (a late report), not, as with the
smallest random uuid, with a chance of 1/(k+1) at every new member. A pinned report's seed is
derived from ``"pinned:" + event_id``, so an operator's split never hands the incident's own id
to the report split out of it.

Incremental clustering (the invariant fusion relies on)
-------------------------------------------------------
Let S be the stored reports, already clustered (``prior``: event_id -> incident id), and B a new
batch. Fetch the candidates C = the live, unpinned stored reports that could link to a live,
unpinned report of B (``select_candidates`` is the reference; fusion fetches a superset, the
stored reports inside ``candidate_spans``, plus those that ref a batch event id or are referenced
by one). Then ``cluster(C + B, rules, prior)`` gives every report of C and B the id that
``cluster(S + B)`` gives it, and ``successors(prior, result)`` renames the stored incidents
that merged (their members that were not fetched take the new id).

Why it holds: every link among stored reports already existed when they were clustered (a link
depends on the pair alone), so their components are the prior incidents, and ``cluster`` unions
the reports sharing a prior id; a batch report links to stored ones only directly, and those are
exactly C. A component's far members need not be fetched: their membership is already known.
This also covers a new report bridging two stored incidents: it links to a near member of each,
and the two prior ids unite. Limits:
  * Removing a link (a report cancelled or pinned) can SPLIT an incident. Pass ALL members of its
    former incident, without prior entries for that incident, and it is recomputed.
  * Changed rules change links among stored reports: recluster everything.
  * ``prior`` must be the clustering of the current stored set (ids as ``cluster`` gave them).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import product
from typing import Literal, get_args
from urllib.parse import quote

from hub.fusion.rules import Reach, Rules
from schemas.event import Certainty, Severity, Status

NAMESPACE = uuid.UUID("0b8f3d6e-7a41-5c2e-9f10-4d6a8c2b1e57")
EARTH_RADIUS_M = 6_371_008.8
SPHEROID_MARGIN = 1.006  # sphere vs. WGS 84 ellipsoid: at most ~0.56 % apart anywhere

Decision = Literal["verified", "refuted"]
Verification = Literal["reported", "corroborated", "verified", "refuted"]

# CAP's orders, most serious / most certain first.
SEVERITY_ORDER: tuple[str, ...] = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTY_ORDER: tuple[str, ...] = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
_SEVERITY_RANK = {word: -i for i, word in enumerate(SEVERITY_ORDER)}  # higher = more severe
_CERTAINTY_RANK = {word: -i for i, word in enumerate(CERTAINTY_ORDER)}
_NOT_CREDIBLE = frozenset({"Unlikely", "Unknown"})
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
    h = _hav(math.radians(a.lat), math.radians(a.lon), math.radians(b.lat), math.radians(b.lon))
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def _hav(phi1: float, lam1: float, phi2: float, lam2: float) -> float:
    # The same expression, in the same order, as the clustering loop: both must agree at the
    # boundary to the last bit.
    s1 = math.sin((phi2 - phi1) * 0.5)
    s2 = math.sin((lam2 - lam1) * 0.5)
    return s1 * s1 + math.cos(phi1) * math.cos(phi2) * s2 * s2


def _hav_limit(distance: float) -> float:
    """The haversine value of ``distance`` metres: comparing against it skips asin/sqrt."""
    return math.sin(distance / (2.0 * EARTH_RADIUS_M)) ** 2


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
    h = _hav(phi_a, math.radians(a.lon), phi_b, math.radians(b.lon))
    return h <= _hav_limit(limits.distance_m)


def _linkable(r: Report) -> bool:
    return not (r.cancelled or r.pinned)


# --- incident ids -----------------------------------------------------------------------------


def seed_id(report: Report) -> uuid.UUID:
    """The id of an incident whose earliest member is ``report`` (see the module doc)."""
    return _seed(report, _millis(report.observed_at.timestamp()))


def _millis(timestamp: float) -> int:
    return min(max(math.floor(timestamp * 1000), 0), (1 << 48) - 1)


def _seed(report: Report, ms: int) -> uuid.UUID:
    name = f"pinned:{report.event_id}" if report.pinned else str(report.event_id)
    # uuid5's hash (SHA-1 of namespace + name), without building the intermediate UUID: only
    # bits that uuid5 leaves alone (it overwrites version and variant) are used.
    digest = int.from_bytes(hashlib.sha1(NAMESPACE.bytes + name.encode()).digest()[:16])
    # RFC 9562 UUIDv8 layout: 48 bits time | version 8 | 12 bits | variant 0b10 | 62 bits.
    value = (ms << 80) | (0x8 << 76) | ((digest >> 64) & 0xFFF) << 64
    value |= (0b10 << 62) | (digest & ((1 << 62) - 1))
    return uuid.UUID(int=value)


# --- clustering -------------------------------------------------------------------------------


class _UnionFind:
    """Disjoint sets over 0..n-1: union by size, path halving (near-constant per operation)."""

    __slots__ = ("parent", "size")

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return
        if self.size[ri] < self.size[rj]:
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.size[ri] += self.size[rj]


def cluster(
    reports: Iterable[Report],
    rules: Rules,
    prior: Mapping[uuid.UUID, uuid.UUID] | None = None,
) -> dict[uuid.UUID, uuid.UUID]:
    """event_id -> incident id for every live report (cancelled ones belong to no incident).

    ``prior`` maps stored reports to the incident they are in: reports sharing a prior id are
    one component already, and the incident id takes the prior ids into account, so the far
    members of a stored incident need not be passed (module doc). Prior entries of pinned and
    cancelled reports are ignored.
    """
    live = [r for r in _unique(reports) if not r.cancelled]
    pts = _Points.of(live)
    sets = _UnionFind(len(live))
    _link_by_proximity(live, pts, rules, sets)
    _link_by_refs(live, sets)
    _link_by_prior(live, prior or {}, sets)
    return _name(live, pts, prior or {}, sets)


def _unique(reports: Iterable[Report]) -> list[Report]:
    # Stored and new sets may overlap (a re-sent event); a conflicting copy is a caller's bug
    # that would otherwise make the result depend on which copy came first.
    seen: dict[uuid.UUID, Report] = {}
    for r in reports:
        other = seen.setdefault(r.event_id, r)
        if other is not r and other != r:
            raise ValueError(f"two different reports with event_id {r.event_id}")
    return list(seen.values())


def _link_by_refs(live: Sequence[Report], sets: _UnionFind) -> None:
    index = {r.event_id: i for i, r in enumerate(live)}
    for i, r in enumerate(live):
        for j in (index[ref] for ref in r.refs if ref in index):
            other = live[j]
            if j != i and (other.status, other.pinned) == (r.status, r.pinned):
                sets.union(i, j)


def _link_by_prior(
    live: Sequence[Report], prior: Mapping[uuid.UUID, uuid.UUID], sets: _UnionFind
) -> None:
    first: dict[uuid.UUID, int] = {}
    for i, r in enumerate(live):
        incident = None if r.pinned else prior.get(r.event_id)
        if incident is not None:
            sets.union(first.setdefault(incident, i), i)


def _name(
    live: Sequence[Report],
    pts: _Points,
    prior: Mapping[uuid.UUID, uuid.UUID],
    sets: _UnionFind,
) -> dict[uuid.UUID, uuid.UUID]:
    """Each component's id: the smallest of its members' seeds and prior ids. Seeds order by
    time first, so only the members observed in the component's first millisecond are hashed."""
    ms = [_millis(t) for t in pts.t]
    earliest: dict[int, list[int]] = {}
    known: dict[int, uuid.UUID] = {}
    for i, r in enumerate(live):
        root = sets.find(i)
        first = earliest.get(root)
        if first is None or ms[i] < ms[first[0]]:
            earliest[root] = [i]
        elif ms[i] == ms[first[0]]:
            first.append(i)
        incident = None if r.pinned else prior.get(r.event_id)
        if incident is not None and (root not in known or incident < known[root]):
            known[root] = incident
    names = {}
    for root, tied in earliest.items():
        name = min(_seed(live[i], ms[i]) for i in tied)
        incident = known.get(root)
        names[root] = incident if incident is not None and incident < name else name
    return {r.event_id: names[sets.find(i)] for i, r in enumerate(live)}


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


# --- the spatio-temporal grid -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Points:
    """Per-report coordinates in the form the inner loop wants (radians, seconds)."""

    t: list[float]
    phi: list[float]
    lam: list[float]
    cos: list[float]

    @classmethod
    def of(cls, live: Sequence[Report]) -> _Points:
        phi = [math.radians(r.lat) for r in live]
        return cls(
            [r.observed_at.timestamp() for r in live],
            phi,
            [math.radians(r.lon) for r in live],
            [math.cos(p) for p in phi],
        )


_CELL_SLACK = 1.0 + 1e-9


@dataclass(frozen=True, slots=True)
class _Grid:
    """Cells at least as large as the pair's limits, so linked reports are in the same or in
    neighbouring cells: latitude rows of D/R radians (no path between two latitudes is
    shorter than the meridian), longitude columns wide enough at the group's highest latitude
    (from the haversine bound, wrapping at the antimeridian), time slices of the window."""

    dphi: float
    dlam: float  # 0: one column (cells would be too wide to help, e.g. near the poles)
    columns: int
    dt: float

    @classmethod
    def for_pair(cls, reach: Reach, indices: Iterable[int], pts: _Points) -> _Grid:
        # A hair larger than the limits, so rounding in a cell index can never skip a cell.
        half = reach.distance_m * _CELL_SLACK / (2.0 * EARTH_RADIUS_M)
        lowest_cos = min((pts.cos[i] for i in indices), default=1.0)
        ratio = math.sin(half) / lowest_cos if lowest_cos > 0 else 2.0
        dlam = 2.0 * math.asin(ratio) if ratio < 1.0 else 0.0
        columns = int(2.0 * math.pi / dlam) if dlam else 1
        if columns < 3:  # with fewer, "left" and "right" neighbours would be the same column
            dlam, columns = 0.0, 1
        return cls(2.0 * half, dlam, columns, reach.window.total_seconds() * _CELL_SLACK)

    def cell(self, i: int, pts: _Points) -> tuple[int, int, int]:
        col = min(int((pts.lam[i] + math.pi) / self.dlam), self.columns - 1) if self.dlam else 0
        return (math.floor(pts.phi[i] / self.dphi), col, math.floor(pts.t[i] / self.dt))

    def offsets(self) -> list[tuple[int, int, int]]:
        cols = (-1, 0, 1) if self.columns > 1 else (0,)
        return [(a, b, c) for a, b, c in product((-1, 0, 1), cols, (-1, 0, 1))]

    def neighbours(
        self,
        cell: tuple[int, int, int],
        offsets: Iterable[tuple[int, int, int]],
        cells: Mapping[tuple[int, int, int], list[int]],
    ) -> Iterator[list[int]]:
        """The non-empty cells at ``offsets`` from ``cell`` (columns wrap around the globe)."""
        y, x, z = cell
        columns = self.columns
        for dy, dx, dz in offsets:
            found = cells.get((y + dy, (x + dx) % columns, z + dz))
            if found:
                yield found

    def bucket(self, indices: Iterable[int], pts: _Points) -> dict[tuple[int, int, int], list[int]]:
        cells: defaultdict[tuple[int, int, int], list[int]] = defaultdict(list)
        for i in indices:
            cells[self.cell(i, pts)].append(i)
        return cells


def _link_by_proximity(
    live: Sequence[Report], pts: _Points, rules: Rules, sets: _UnionFind
) -> None:
    groups: defaultdict[tuple[str, str], list[int]] = defaultdict(list)  # (status, type)
    for i, r in enumerate(live):
        if not r.pinned and rules.rule(r.event_type).correlate:
            groups[(r.status, r.event_type)].append(i)
    for a, b, reach in _type_pairs(groups, rules):
        if a is b:
            _self_join(a, reach, pts, sets)
        else:
            _cross_join(a, b, reach, pts, sets)


def _type_pairs(
    groups: Mapping[tuple[str, str], list[int]], rules: Rules
) -> Iterator[tuple[list[int], list[int], Reach]]:
    """Each compatible pair of (status, type) groups once, with the pair's limits."""
    for (status, a), members in groups.items():
        for b in sorted(rules.partners(a)):
            other = groups.get((status, b))
            reach = rules.limits(a, b)
            if other is not None and reach is not None and a <= b:
                yield members, (members if a == b else other), reach


def _self_join(members: list[int], reach: Reach, pts: _Points, sets: _UnionFind) -> None:
    grid = _Grid.for_pair(reach, members, pts)
    cells = grid.bucket(members, pts)
    # Half the neighbourhood: each pair of neighbouring cells is compared once.
    forward = [off for off in grid.offsets() if off > (0, 0, 0)]
    for cell, xs in cells.items():
        _compare(xs, xs, reach, pts, sets, same=True)
        for ys in grid.neighbours(cell, forward, cells):
            _compare(xs, ys, reach, pts, sets, same=False)


def _cross_join(a: list[int], b: list[int], reach: Reach, pts: _Points, sets: _UnionFind) -> None:
    grid = _Grid.for_pair(reach, a + b, pts)
    cells_b = grid.bucket(b, pts)
    offsets = grid.offsets()
    for cell, xs in grid.bucket(a, pts).items():
        for ys in grid.neighbours(cell, offsets, cells_b):
            _compare(xs, ys, reach, pts, sets, same=False)


def _compare(
    xs: list[int], ys: list[int], reach: Reach, pts: _Points, sets: _UnionFind, *, same: bool
) -> None:
    """Link every pair of ``xs`` x ``ys`` within the limits (``same``: xs is ys, pairs once).

    The hot loop: locals only, cheap rejections (time, latitude) before the trigonometry, and
    pairs already in one set are skipped (dense incidents would otherwise cost a sine each).
    """
    t, phi, lam, cos = pts.t, pts.phi, pts.lam, pts.cos
    window = reach.window.total_seconds()
    dphi = reach.distance_m / EARTH_RADIUS_M
    limit = _hav_limit(reach.distance_m)
    find, union, sin = sets.find, sets.union, math.sin
    for n, i in enumerate(xs):
        ti, phii, lami, cosi = t[i], phi[i], lam[i], cos[i]
        for j in xs[n + 1 :] if same else ys:
            if abs(t[j] - ti) > window or abs(phi[j] - phii) > dphi:
                continue
            if find(i) == find(j):
                continue
            s1 = sin((phi[j] - phii) * 0.5)
            s2 = sin((lam[j] - lami) * 0.5)
            if s1 * s1 + cosi * cos[j] * s2 * s2 <= limit:
                union(i, j)


# --- what the caller fetches ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Where stored reports of ``event_type`` that could link to the batch lie: observed in
    [start, end], inside the box (degrees, WGS 84). The store answers it with one index range
    scan on (status, event_type, observed_at), whatever the history behind it."""

    status: str
    event_type: str
    start: datetime
    end: datetime
    west: float
    south: float
    east: float
    north: float


def candidate_spans(rules: Rules, reports: Iterable[Report]) -> list[Span]:
    """A superset of the stored reports that may link by proximity to a live, unpinned report
    of the batch: per stored type, the times and the box within the reach of the batch's
    reports of a partner type, one span per run of reports close in time (a batch of a
    backlog spans days: its reports' windows, not the days between them, are searched).
    Empty when nothing in the batch links by proximity."""
    groups: dict[tuple[str, str], list[Report]] = defaultdict(list)
    for r in reports:
        if _linkable(r):
            groups[(r.status, r.event_type)].append(r)
    spans: list[Span] = []
    for (status, event_type), members in groups.items():
        reach = rules.reach(event_type)
        if reach is None:
            continue
        for run in _runs(members, 2 * reach.window.total_seconds()):
            near = _near(status, run, reach)
            spans += [replace(near, event_type=p) for p in sorted(rules.partners(event_type))]
    return sorted(spans, key=lambda s: (s.status, s.event_type, s.start))


def _runs(members: list[Report], gap_s: float) -> Iterator[list[Report]]:
    """``members`` by time, cut where two follow each other more than ``gap_s`` apart."""
    ordered = sorted(members, key=lambda r: r.observed_at)
    start = 0
    for i in range(1, len(ordered)):
        if (ordered[i].observed_at - ordered[i - 1].observed_at).total_seconds() > gap_s:
            yield ordered[start:i]
            start = i
    yield ordered[start:]


def _near(status: str, members: Sequence[Report], reach: Reach) -> Span:
    """The span within ``reach`` of any of ``members`` (box and time range of them all)."""
    lats = [r.lat for r in members]
    lons = [r.lon for r in members]
    times = [r.observed_at for r in members]
    dlat = math.degrees(reach.distance_m * SPHEROID_MARGIN / EARTH_RADIUS_M)
    top = min(max(abs(min(lats)), abs(max(lats))) + dlat, 90.0)
    dlon = min(dlat / max(math.cos(math.radians(top)), 1e-6), 360.0)
    return Span(
        status,
        "",
        min(times) - reach.window,
        max(times) + reach.window,
        min(lons) - dlon,
        min(lats) - dlat,
        max(lons) + dlon,
        max(lats) + dlat,
    )


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
        return f"k:{_esc(system)}:{_esc(reporter)}"
    if reporter:
        return f"r:{_esc(community_id or '')}:{_esc(reporter)}"
    return f"s:{_esc(system)}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is


@functools.lru_cache(maxsize=1 << 16)  # the same systems and reporters, batch after batch
def _esc(part: str) -> str:
    return part if _UNRESERVED.fullmatch(part) else quote(part, safe="")


def independent_sources(reports: Iterable[Report]) -> int:
    """The number of distinct sources among the live reports."""
    return len({r.source_key for r in reports if not r.cancelled})


def verification_state(sources: int, decision: Decision | None = None) -> Verification:
    """A principal's decision wins; otherwise two or more independent sources corroborate."""
    if decision is not None:
        return decision
    return "corroborated" if sources >= 2 else "reported"


def severity_of(reports: Iterable[Report]) -> Severity:
    """The highest severity among credible live reports (certainty above Unlikely/Unknown);
    when none is credible, the highest overall; ``Unknown`` for none at all."""
    live = [r for r in reports if not r.cancelled]
    credible = [r for r in live if r.certainty not in _NOT_CREDIBLE]
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
    ) -> IncidentSummary:
        """The summary of the live ``reports`` (cancelled ones are left out)."""
        live = sorted((r for r in reports if not r.cancelled), key=_timeline)
        if not live:
            raise ValueError(f"incident {incident_id} has no live report")
        if len(live) == 1:  # most incidents: the report's own words, without the tallies
            return cls._of_one(incident_id, live[0], decision)
        statuses = {r.status for r in live}
        if len(statuses) > 1:
            raise ValueError(f"incident {incident_id} mixes pictures {sorted(statuses)}")
        sources = independent_sources(live)
        return cls(
            incident_id=incident_id,
            status=live[0].status,
            event_type=_main_type(live),
            severity=severity_of(live),
            certainty=max((r.certainty for r in live), key=_CERTAINTY_RANK.__getitem__),
            first_observed_at=live[0].observed_at,
            last_observed_at=max(r.observed_at for r in live),
            communities=tuple(sorted({r.community_id for r in live if r.community_id})),
            sources=sources,
            verification=verification_state(sources, decision),
            members=tuple(r.event_id for r in live),
            points=tuple((r.lon, r.lat) for r in live),
        )

    @classmethod
    def _of_one(
        cls, incident_id: uuid.UUID, r: Report, decision: Decision | None
    ) -> IncidentSummary:
        return cls(
            incident_id=incident_id,
            status=r.status,
            event_type=r.event_type,
            severity=r.severity,
            certainty=r.certainty,
            first_observed_at=r.observed_at,
            last_observed_at=r.observed_at,
            communities=(r.community_id,) if r.community_id else (),
            sources=1,
            verification=verification_state(1, decision),
            members=(r.event_id,),
            points=((r.lon, r.lat),),
        )


def _timeline(r: Report) -> tuple[datetime, uuid.UUID]:
    return (r.observed_at, r.event_id)


def _main_type(live: Sequence[Report]) -> str:
    """The most frequent type; ties go to the type with the most severe report, then by name."""
    counts = Counter(r.event_type for r in live)
    if len(counts) == 1:
        return live[0].event_type
    worst: dict[str, int] = {}
    for r in live:
        worst[r.event_type] = max(worst.get(r.event_type, -99), _SEVERITY_RANK[r.severity])
    return min(counts, key=lambda t: (-counts[t], -worst[t], t))
