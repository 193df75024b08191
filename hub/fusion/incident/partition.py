"""Incidents inside a linked neighbourhood: a deterministic partition with a bounded extent.

The link graph (``links``) says which reports COULD describe the same emergency; its connected
components (the linked neighbourhoods) chain: A links B and B links C, so in a storm an address
with many calls would glue unrelated emergencies into one incident, which would then
corroborate itself. Here each neighbourhood is cut into incidents by a seeded assignment:

* The reports are taken in a canonical order, that of their seed ids (observed time first, then
  a hash of the event id: ``ids.seed_texts``), never in the order they arrived.
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

The assignment is one pass in the canonical order, compiled by numba (``_assign_rows``): a
storm's neighbourhoods hold tens of thousands of reports per batch, and the pass was most of
fusion's time as Python. ``NUMBA_DISABLE_JIT=1`` runs the same code as Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
from numba import njit, types
from numba.typed import Dict

from hub.fusion.incident.geodesy import hav, hav_limit, metres

Limits = Callable[[str, str], tuple[float, float] | None]


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
    ``place``: where, when and of which type each row is.
    """
    n = len(rank)
    order = np.argsort(rank, kind="stable")
    order = order[rank[order] >= 0]
    if len(order) == 0:
        return np.full(n, -1, dtype=np.int64)
    start, earlier = _earlier_neighbours(rank, edges)
    group_of, group_start, group_rows = _groups(unit, order)
    return _assign_rows(
        order.astype(np.int64),
        np.asarray(pinned, dtype=np.bool_),
        start,
        earlier.astype(np.int64),
        group_of,
        group_start,
        group_rows,
        _codes(sources),
        place.phi,
        place.lam,
        place.t,
        place.type_code,
        *place.pair_limits(),
        hav_limit(same_place_m),
    )


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


def _groups(unit: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The refs groups of more than one row (most reports are alone, and stand for
    themselves): per row its group (-1: alone), and per group its rows in the canonical order
    (CSR offsets and rows)."""
    n = len(unit)
    several = np.bincount(unit, minlength=1)[unit[order]] > 1
    rows = order[several]  # in the canonical order
    group_of = np.full(n, -1, dtype=np.int64)
    if len(rows) == 0:
        return group_of, np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int64)
    units, counts = np.unique(unit[rows], return_counts=True)
    by_unit = rows[np.argsort(unit[rows], kind="stable")]  # grouped, canonical within a group
    group_of[by_unit] = np.repeat(np.arange(len(units)), counts)
    group_start = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum(counts, out=group_start[1:])
    return group_of, group_start, by_unit.astype(np.int64)


def _codes(values: Sequence[str | None] | pl.Series) -> np.ndarray:
    """Each value as a small integer (the rank of its text among the distinct ones), -1 for
    None."""
    ranks = pl.Series(values, dtype=pl.String).rank("dense")
    return (ranks.fill_null(0).cast(pl.Int64) - 1).to_numpy()


class Place:
    """Where and when each row is (radians, seconds), its type, and the pair limits of the
    types: what the extent test reads."""

    def __init__(
        self,
        phi: np.ndarray,
        lam: np.ndarray,
        t: np.ndarray,
        types: Sequence[str] | pl.Series,
        limits: Limits,
    ) -> None:
        self.phi = np.ascontiguousarray(phi, dtype=np.float64)
        self.lam = np.ascontiguousarray(lam, dtype=np.float64)
        self.t = np.ascontiguousarray(t, dtype=np.float64)
        self.type_code = _codes(types)
        self.names = pl.Series(types, dtype=pl.String).unique().sort().to_list()
        self._limits = limits

    def pair_limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair of type codes (the row's, the seed's): the distance (m), its haversine value
        and the window (s); NaN where the two types never link."""
        k = len(self.names)
        distance, limit, window = (np.full((k, k), np.nan) for _ in range(3))
        for a in range(k):
            for b in range(k):
                found = self._limits(self.names[a], self.names[b])
                if found is not None:
                    distance[a, b], window[a, b] = found
                    limit[a, b] = hav_limit(found[0])
        return distance, limit, window


# --- the compiled pass --------------------------------------------------------------------------


@njit(cache=True, nogil=True)  # the decoder thread runs meanwhile
def _assign_rows(
    order: np.ndarray,
    pinned: np.ndarray,
    start: np.ndarray,
    earlier: np.ndarray,
    group_of: np.ndarray,
    group_start: np.ndarray,
    group_rows: np.ndarray,
    source: np.ndarray,
    phi: np.ndarray,
    lam: np.ndarray,
    t: np.ndarray,
    type_code: np.ndarray,
    distance: np.ndarray,
    limit: np.ndarray,
    window: np.ndarray,
    same_limit: float,
) -> np.ndarray:
    """``assign``'s pass: each row in the canonical order joins the first incident, among those
    of its earlier neighbours (best first), whose seed has it inside its extent and whose
    automated sources it does not contradict; else it seeds one. A refs group goes with its
    earliest row. ``placed`` remembers, per (seed, automated source), the distinct points the
    source reported in that incident, as linked lists in ``item``/``nxt``."""
    n = len(pinned)
    out = np.full(n, -1, np.int64)
    tried = np.full(n, -1, np.int64)  # tried[seed] == r: seed's incident already tried for r
    n_sources = max(source.max(), 0) + 1
    placed = Dict.empty(key_type=types.int64, value_type=types.int64)
    nxt = np.full(n, -1, np.int64)
    item = np.empty(n, np.int64)
    used = 0
    alone = np.empty(1, np.int64)
    for r in order:
        if out[r] >= 0:  # an update, placed with the earliest report of its refs group
            continue
        g = group_of[r]
        if g >= 0:
            members = group_rows[group_start[g] : group_start[g + 1]]
        else:
            alone[0] = r
            members = alone
        best = -1
        if not pinned[r]:
            for k in range(start[r], start[r + 1]):
                seed = out[earlier[k]]
                if tried[seed] == r:
                    continue
                tried[seed] = r
                if _within(r, seed, phi, lam, t, type_code, distance, limit, window) and _admits(
                    seed, members, source, n_sources, placed, nxt, item, phi, lam, same_limit
                ):
                    best = seed
                    break
        if best < 0:
            best = r
        for m in members:
            out[m] = best
            if source[m] >= 0 and not _placed_at(
                best * n_sources + source[m], m, placed, nxt, item, phi, lam
            ):
                key = best * n_sources + source[m]
                item[used] = m
                nxt[used] = _head(placed, key)
                placed[key] = used
                used += 1
    return out


@njit(cache=True)
def _within(
    row: int,
    seed: int,
    phi: np.ndarray,
    lam: np.ndarray,
    t: np.ndarray,
    type_code: np.ndarray,
    distance: np.ndarray,
    limit: np.ndarray,
    window: np.ndarray,
) -> bool:
    """Whether ``row`` lies inside the extent of the incident seeded by ``seed``: the ellipse
    (d / D)^2 + (dt / W)^2 <= 1 of the pair's distance D and window W (a pair of types that
    may not link: never). Inside the box of the link rule, and tighter at its corners: a
    report both at the edge of the distance and of the window is unlikely to describe the
    same emergency."""
    a, b = type_code[row], type_code[seed]
    d, w = distance[a, b], window[a, b]
    if math.isnan(d):
        return False
    dt = abs(t[row] - t[seed])
    if dt > w:
        return False
    h = hav(phi[row], lam[row], phi[seed], lam[seed])
    if h > limit[a, b]:
        return False
    return (metres(h) / d) ** 2 + (dt / w) ** 2 <= 1.0


@njit(cache=True)
def _admits(
    seed: int,
    members: np.ndarray,
    source: np.ndarray,
    n_sources: int,
    placed: Dict,
    nxt: np.ndarray,
    item: np.ndarray,
    phi: np.ndarray,
    lam: np.ndarray,
    same_limit: float,
) -> bool:
    """No member has an automated source that already reported this incident at another
    place (farther than the same-place distance)."""
    for m in members:
        if source[m] < 0:
            continue
        p = _head(placed, seed * n_sources + source[m])
        while p >= 0:
            other = item[p]
            if hav(phi[m], lam[m], phi[other], lam[other]) > same_limit:
                return False
            p = nxt[p]
    return True


@njit(cache=True)
def _placed_at(
    key: int,
    m: int,
    placed: Dict,
    nxt: np.ndarray,
    item: np.ndarray,
    phi: np.ndarray,
    lam: np.ndarray,
) -> bool:
    """Whether the source of ``key`` already reported the incident at ``m``'s very point (a
    source repeating itself at one point would otherwise make each test longer)."""
    p = _head(placed, key)
    while p >= 0:
        other = item[p]
        if phi[other] == phi[m] and lam[other] == lam[m]:
            return True
        p = nxt[p]
    return False


@njit(cache=True)
def _head(placed: Dict, key: int) -> int:
    """The first node of ``key``'s list, -1 when it has none."""
    return placed[key] if key in placed else -1  # noqa: SIM401 - .get() types as Optional in numba
