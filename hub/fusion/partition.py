"""Incidents inside a linked neighbourhood: a deterministic partition with a bounded extent.

The link graph (``links``) says which reports COULD describe the same emergency; its connected
components (the linked neighbourhoods) chain: A links B and B links C, so in a storm an address
with many calls would glue unrelated emergencies into one incident, which would then
corroborate itself. Here each neighbourhood is cut into incidents by a seeded assignment:

* The reports are taken in a canonical order, that of their seed ids (observed time first, then
  a hash of the event id: ``correlate.seed_texts``), never in the order they arrived.
* A report joins the best incident whose SEED (its first report) it links to, the pair's
  distance and window measured from that seed; else it seeds an incident of its own. Best =
  the lowest score ``(d / D)^2 + (dt / W)^2`` (D, W: the pair's limits), then the older seed.
* The same automated source (a system ``s:`` or a signed sensor ``k:``) reporting two places
  farther apart than ``Rules.same_place_m`` is two emergencies: such a report does not join an
  incident that already holds a report of its source elsewhere.
* Reports joined by ``refs`` (an update and what it updates) travel together: the group's
  earliest report decides for all, and they are exempt from the extent.
* A pinned report (split out by an operator) and the updates that follow it are an incident
  of their own.

So every member lies within its pair's distance and window of the incident's seed (refs
exempt), and any two members within twice that: an incident's extent is bounded however dense
the reports. The result is a function of the neighbourhood's set of reports: a report depends
only on those before it in the canonical order, so the same set in any arrival order, or
incrementally (fusion recomputes a neighbourhood whenever it grows), gives the same incidents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hub.fusion.geometry import hav, hav_limit, metres


def assign(
    rank: np.ndarray,
    unit: np.ndarray,
    pinned: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    sources: Sequence[str | None],
    place: Place,
    same_place_m: float,
) -> np.ndarray:
    """The seed row of every row's incident (-1 where ``rank`` is -1: not a live report).

    ``rank``: the canonical position of each live row (0..k-1), -1 for others. ``unit``: the
    refs group of each row (rows of one group move together). ``edges``: (i, j, score) of the
    proximity links. ``sources``: the automated source key of each row, None for people.
    ``coords``: (phi, lam) in radians, for the same-source test.
    """
    n = len(rank)
    seed_of = np.full(n, -1, dtype=np.int64)
    order = np.argsort(rank, kind="stable")
    order = order[rank[order] >= 0]
    if len(order) == 0:
        return seed_of
    start, earlier = _earlier_neighbours(rank, edges)
    groups = _groups(unit, order)
    state = _Incidents(sources, place, same_place_m)
    pinned_l, start_l, earlier_l = pinned.tolist(), start.tolist(), earlier.tolist()
    unit_l = unit.tolist()
    out = seed_of.tolist()
    for r in order.tolist():
        if out[r] >= 0:  # an update, placed with the earliest report of its refs group
            continue
        group = groups.get(unit_l[r]) or [r]
        best = -1
        if not pinned_l[r] and start_l[r] < start_l[r + 1]:
            tried: set[int] = set()
            for k in range(start_l[r], start_l[r + 1]):
                seed = out[earlier_l[k]]
                if seed in tried:
                    continue
                tried.add(seed)
                if place.within_extent(r, seed) and state.admits(seed, group):
                    best = seed
                    break
        if best < 0:
            best = r
        state.add(best, group)
        for m in group:
            out[m] = best
    return np.asarray(out, dtype=np.int64)


def _earlier_neighbours(
    rank: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its neighbours that come before it, best first (lowest score, then the older
    one): CSR offsets (n + 1) and the neighbour rows."""
    i, j, score = edges
    n = len(rank)
    keep = (rank[i] >= 0) & (rank[j] >= 0)
    i, j, score = i[keep], j[keep], score[keep]
    i_later = rank[i] > rank[j]
    later = np.where(i_later, i, j)
    earlier = np.where(i_later, j, i)
    o = np.lexsort((rank[earlier], score, later))
    later, earlier = later[o], earlier[o]
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(later, minlength=n), out=start[1:])
    return start, earlier


def _groups(unit: np.ndarray, order: np.ndarray) -> dict[int, list[int]]:
    """The members of each refs group of more than one row, in the canonical order (most
    reports are alone: they are left out, and stand for themselves)."""
    several = np.bincount(unit, minlength=1)[unit[order]] > 1
    members: dict[int, list[int]] = {}
    for r in order[several].tolist():
        members.setdefault(int(unit[r]), []).append(r)
    return members


class Place:
    """Where and when each row is, and the pair limits of the rows' types: the extent test."""

    def __init__(
        self,
        phi: np.ndarray,
        lam: np.ndarray,
        t: np.ndarray,
        types: Sequence[str],
        limits: Callable[[str, str], tuple[float, float] | None],
    ) -> None:
        self.phi, self.lam, self.t = phi.tolist(), lam.tolist(), t.tolist()
        self.types = types
        self._limits = limits
        self._cache: dict[tuple[str, str], tuple[float, float] | None] = {}

    def within_extent(self, row: int, seed: int) -> bool:
        """Whether ``row`` lies inside the extent of the incident seeded by ``seed``: the
        ellipse (d / D)^2 + (dt / W)^2 <= 1 of the pair's distance D and window W (a pair of
        types that may not link: never). Inside the box of the link rule, and tighter at its
        corners: a report both at the edge of the distance and of the window is unlikely to
        describe the same emergency."""
        key = (self.types[row], self.types[seed])
        found = self._cache.get(key, ...)
        if found is ...:
            found = self._limits(*key)
            self._cache[key] = found
        if found is None:
            return False
        distance, window = found
        dt = abs(self.t[row] - self.t[seed])
        if dt > window:
            return False
        h = self.hav(row, seed)
        if h > hav_limit(distance):
            return False
        return (metres(h) / distance) ** 2 + (dt / window) ** 2 <= 1.0

    def hav(self, a: int, b: int) -> float:
        return hav(self.phi[a], self.lam[a], self.phi[b], self.lam[b])


class _Incidents:
    """What the assignment remembers of the incidents made so far: which rows are seeds, and
    where each automated source reported in each incident."""

    def __init__(self, sources: Sequence[str | None], place: Place, same: float) -> None:
        self.sources = sources
        self.place = place
        self.limit = hav_limit(same)
        # (seed, source) -> one row per distinct point the source reported in the incident
        # (a source repeating itself at one point would otherwise make each test longer)
        self.placed: dict[tuple[int, str], dict[tuple[float, float], int]] = {}

    def admits(self, seed: int, group: list[int]) -> bool:
        """No report of the group has an automated source that already reported this
        incident at another place."""
        for m in group:
            source = self.sources[m]
            if source is None:
                continue
            for other in self.placed.get((seed, source), {}).values():
                if not self._same_place(m, other):
                    return False
        return True

    def add(self, seed: int, group: list[int]) -> None:
        for m in group:
            source = self.sources[m]
            if source is not None:
                point = (self.place.phi[m], self.place.lam[m])
                self.placed.setdefault((seed, source), {}).setdefault(point, m)

    def _same_place(self, a: int, b: int) -> bool:
        return self.place.hav(a, b) <= self.limit
