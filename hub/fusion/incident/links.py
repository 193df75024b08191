"""The incident graph on columns: every link of ``model.could_link`` among thousands of
reports at once, the linked neighbourhoods, and their incidents, named as ``ids`` says.

``model`` holds the model (the link rule, the incremental invariant; seeds in ``ids``); this
module is its fast arm. Per compatible pair of (picture, type) groups, a k-d tree over
coordinates scaled so that the pair's limits become a unit box returns every pair that could
link (a superset: latitude by the meridian bound, longitude by the haversine bound at the
lowest cosine of the groups, time by the window; points near the antimeridian are also placed a
turn away), numpy applies the exact test, and scipy labels the components of the proximity and
refs edges: the linked neighbourhoods, which ``partition`` cuts into incidents.

Exactness: numpy's sine may differ from libm's in the last bit, so a pair whose haversine value
lies within a hair of the limit is decided again by ``geodesy.hav`` (math, the link rule's
own expression). The result then equals the pairwise rule's exactly, which the property tests
check against an all-pairs oracle.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from hub.fusion.incident.geodesy import EARTH_RADIUS_M, SPHEROID_MARGIN, hav, hav_limit
from hub.fusion.incident.ids import seed_texts
from hub.fusion.incident.model import Report
from hub.fusion.incident.partition import Place, assign
from hub.fusion.incident.twins import twins_of
from hub.fusion.rules import Reach, Rules

# The columns a report frame has (``model.Report`` as columns); ``prior`` and
# ``neighbourhood`` are the incident and the linked neighbourhood a stored report is in (null
# for new ones). Ids are canonical uuid text, which orders as the uuids.
REPORT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "event_id": pl.String,
    "event_type": pl.String,
    "status": pl.String,
    "observed_at": pl.Datetime("us", "UTC"),
    "lon": pl.Float64,
    "lat": pl.Float64,
    "community_id": pl.String,
    "source_key": pl.String,
    "severity": pl.String,
    "certainty": pl.String,
    "refs": pl.List(pl.String),
    "pinned": pl.Boolean,
    "cancelled": pl.Boolean,
    "prior": pl.String,
    "neighbourhood": pl.String,
}

_DEG = math.pi / 180.0  # as math.radians multiplies, to the bit
_SLACK = 1e-6  # the unit box a hair larger: rounding in the scaling never loses a pair
_BORDER = 1e-12  # relative: a haversine value this close to the limit is decided by math
_MAX_MS = (1 << 48) - 1  # as ids.millis clips


def report_frame(
    reports: Sequence[Report], prior: Mapping[uuid.UUID, uuid.UUID] | None = None
) -> pl.DataFrame:
    """Reports as a frame of ``REPORT_SCHEMA`` (for callers that hold Report objects)."""
    prior = prior or {}
    return pl.DataFrame(
        {
            "event_id": [str(r.event_id) for r in reports],
            "event_type": [r.event_type for r in reports],
            "status": [r.status for r in reports],
            "observed_at": [r.observed_at for r in reports],
            "lon": [r.lon for r in reports],
            "lat": [r.lat for r in reports],
            "community_id": [r.community_id for r in reports],
            "source_key": [r.source_key for r in reports],
            "severity": [r.severity for r in reports],
            "certainty": [r.certainty for r in reports],
            "refs": [[str(ref) for ref in r.refs] for r in reports],
            "pinned": [r.pinned for r in reports],
            "cancelled": [r.cancelled for r in reports],
            "prior": [_text(prior.get(r.event_id)) for r in reports],
            "neighbourhood": [None] * len(reports),
        },
        schema=REPORT_SCHEMA,
    )


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class _Points:
    """Per-row coordinates as the link rule computes them (radians, seconds)."""

    t: np.ndarray
    phi: np.ndarray
    lam: np.ndarray
    cos: np.ndarray

    @classmethod
    def of(cls, reports: pl.DataFrame) -> _Points:
        # datetime.timestamp() is microseconds / 10**6, correctly rounded: so is this.
        t = reports["observed_at"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
        phi = reports["lat"].to_numpy() * _DEG
        return cls(t, phi, reports["lon"].to_numpy() * _DEG, np.cos(phi))


def correlate_frame(reports: pl.DataFrame, rules: Rules, *, twins: bool = True) -> pl.DataFrame:
    """Per row (rows have distinct event_ids): ``component``, the linked neighbourhood it is
    in (the connected component of the link graph, named by its smallest seed), and
    ``incident``, its incident (``partition.assign`` within the neighbourhood, named by the
    seed of its first report); both null for cancelled rows; and ``seed``, each row's own seed
    (``ids.seed_text``: a ``seed`` column's where the rows have one).

    ``twins``: reports identical in all the partition reads (``twins.twins_of``) are linked and
    partitioned once, by the first of them, and the others follow it: a storm repeats reports
    at one point and minute, and each would otherwise multiply the pairs. The result is the
    same (False: every row takes part; the tests compare the two)."""
    n = reports.height
    if n == 0:
        return pl.DataFrame(
            schema={"component": pl.String, "incident": pl.String, "seed": pl.String}
        )
    pts = _Points.of(reports)
    alive = ~reports["cancelled"].to_numpy()
    seeds = _seeds(reports, pts)
    rank = _rank(seeds, alive)
    refs = _ref_edges(reports, alive)
    automated = _automated(reports)
    twin_of = (
        twins_of(reports, (pts.t, pts.phi, pts.lam), rank, refs, automated, rules)
        if twins
        else np.full(n, -1)
    )
    follows = twin_of >= 0
    near = list(_proximity_edges(reports, alive & ~follows, pts, rules))
    i = np.concatenate([refs[0], *(e[0] for e in near)])
    j = np.concatenate([refs[1], *(e[1] for e in near)])
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    labels[follows] = labels[twin_of[follows]]
    _, units = connected_components(
        coo_matrix((np.ones(len(refs[0]), dtype=np.int8), refs), shape=(n, n)), directed=False
    )
    scored = (
        np.concatenate([e[0] for e in near]) if near else np.empty(0, np.int64),
        np.concatenate([e[1] for e in near]) if near else np.empty(0, np.int64),
        np.concatenate([e[2] for e in near]) if near else np.empty(0, np.float64),
    )
    seed_rows = assign(
        np.where(follows, -1, rank),
        units,
        reports["pinned"].to_numpy(),
        scored,
        automated,
        Place(pts.phi, pts.lam, pts.t, reports["event_type"], _pair_limits(rules)),
        rules.same_place_m,
    )
    seed_rows[follows] = seed_rows[twin_of[follows]]
    first = np.asarray(_first_rows(labels, rank), dtype=np.int64)
    seed = seeds
    component_row = np.where(alive, first[labels], -1)
    return pl.DataFrame(
        [
            _pick(seed, component_row).alias("component"),
            _pick(seed, seed_rows).alias("incident"),
            seed,
        ]
    )


def _pick(values: pl.Series, rows: np.ndarray) -> pl.Series:
    """``values`` at ``rows``, null where a row is -1 (in bulk, no Python loop)."""
    picked = values.gather(np.maximum(rows, 0))
    return pl.select(pl.when(pl.Series(rows >= 0)).then(picked)).to_series()


Edges = tuple[np.ndarray, np.ndarray]
Scored = tuple[np.ndarray, np.ndarray, np.ndarray]


def _pair_limits(rules: Rules) -> Callable[[str, str], tuple[float, float] | None]:
    """(distance in metres, window in seconds) of a pair of types, None when they never link."""

    def limits(a: str, b: str) -> tuple[float, float] | None:
        reach = rules.limits(a, b)
        return None if reach is None else (reach.distance_m, reach.window.total_seconds())

    return limits


def _seeds(reports: pl.DataFrame, pts: _Points) -> pl.Series:
    """Every row's seed text (``ids.seed_text``): a ``seed`` column's where it has one
    (rows fusion partitioned before, from its cache: one hash each spared), else computed."""
    ms = np.clip(np.floor(pts.t * 1000.0), 0, _MAX_MS).astype(np.int64)
    if "seed" not in reports.columns:
        made = seed_texts(reports["event_id"].to_list(), reports["pinned"].to_list(), ms)
        return pl.Series("seed", made, dtype=pl.String)
    todo = np.flatnonzero(reports["seed"].is_null().to_numpy())
    if len(todo) == 0:
        return reports["seed"]
    rows = reports[todo]
    made = seed_texts(rows["event_id"].to_list(), rows["pinned"].to_list(), ms[todo])
    return reports["seed"].clone().scatter(todo, made)


def _rank(seeds: pl.Series, alive: np.ndarray) -> np.ndarray:
    """The canonical order of the live rows (by seed text: time first), -1 for the others.
    Seeds are hex and dashes: their byte order is their text order."""
    rank = np.full(seeds.len(), -1, dtype=np.int64)
    live = np.flatnonzero(alive)
    order = live[seeds.gather(live).arg_sort().to_numpy()]
    rank[order] = np.arange(len(order))
    return rank


def _first_rows(labels: np.ndarray, rank: np.ndarray) -> list[int]:
    """Per component label, its first live row in the canonical order (-1: none live). The
    component is named by that row's seed, its smallest."""
    k = int(labels.max()) + 1 if len(labels) else 0
    first = np.full(k, -1, dtype=np.int64)
    live = np.flatnonzero(rank >= 0)
    by_rank = live[np.argsort(rank[live])][::-1]  # later rows first: the earliest writes last
    first[labels[by_rank]] = by_rank
    return first.tolist()


def _automated(reports: pl.DataFrame) -> list[str | None]:
    """The source key of rows from an automated source (a system or a signed sensor): one such
    source reporting two places reports two emergencies (``partition``). People: None."""
    keys = reports["source_key"]
    automated = keys.str.starts_with("s:") | keys.str.starts_with("k:")
    return pl.select(pl.when(automated).then(keys))["source_key"].to_list()


def _proximity_edges(
    reports: pl.DataFrame, rows: np.ndarray, pts: _Points, rules: Rules
) -> Iterator[Scored]:
    """The proximity links among ``rows`` (a mask), with their scores."""
    types = reports["event_type"]
    correlating = {t for t in types.unique().to_list() if rules.rule(t).correlate}
    linkable = rows & ~reports["pinned"].to_numpy() & types.is_in(list(correlating)).to_numpy()
    groups = (
        reports.select("status", "event_type")
        .with_row_index("row")
        .filter(pl.Series(linkable))
        .group_by("status", "event_type")
        .agg("row")
    )
    members = {(s, t): np.asarray(rows, dtype=np.int64) for s, t, rows in groups.iter_rows()}
    for (status, a), rows_a in members.items():
        for b in sorted(rules.partners(a)):
            rows_b = members.get((status, b))
            reach = rules.limits(a, b)
            if rows_b is not None and reach is not None and a <= b:
                yield _pairs(rows_a, rows_b, reach, pts, same=a == b)


def _pairs(a: np.ndarray, b: np.ndarray, reach: Reach, pts: _Points, *, same: bool) -> Scored:
    """The pairs of rows of ``a`` x ``b`` that link by proximity (``same``: a is b), with
    their score (``partition``)."""
    distance, window = reach.distance_m, reach.window.total_seconds()
    dphi = distance / EARTH_RADIUS_M
    both = a if same else np.concatenate([a, b])
    lowest_cos = float(pts.cos[both].min())
    ratio = math.sin(distance / (2.0 * EARTH_RADIUS_M)) / lowest_cos if lowest_cos > 0 else 2.0
    dlam = 2.0 * math.asin(ratio) if ratio < 1.0 else math.inf
    t0 = float(pts.t[both].min())

    def scaled(rows: np.ndarray, turn: float = 0.0) -> np.ndarray:
        cols = [pts.phi[rows] / dphi, (pts.t[rows] - t0) / window]
        if math.isfinite(dlam):
            cols.append((pts.lam[rows] + turn) / dlam)
        return np.column_stack(cols)

    rows_b, coords_b = b, scaled(b)
    if math.isfinite(dlam):  # the antimeridian: points near it also a turn away
        reach_lam = dlam * (1.0 + _SLACK)
        west = b[pts.lam[b] < -math.pi + reach_lam]
        east = b[pts.lam[b] > math.pi - reach_lam]
        rows_b = np.concatenate([b, west, east])
        coords_b = np.concatenate([coords_b, scaled(west, 2 * math.pi), scaled(east, -2 * math.pi)])
    found = cKDTree(scaled(a)).sparse_distance_matrix(
        cKDTree(coords_b), 1.0 + _SLACK, p=np.inf, output_type="ndarray"
    )
    i, j = a[found["i"]], rows_b[found["j"]]
    keep = i < j if same else i != j
    return _exact(i[keep], j[keep], distance, window, pts)


def _exact(i: np.ndarray, j: np.ndarray, distance: float, window: float, pts: _Points) -> Scored:
    """The candidate pairs that pass the link rule's test, in its own order of operations,
    with their score: (distance / limit)^2 + (time apart / window)^2."""
    t, phi, lam, cos = pts.t, pts.phi, pts.lam, pts.cos
    near = (np.abs(t[j] - t[i]) <= window) & (np.abs(phi[j] - phi[i]) <= distance / EARTH_RADIUS_M)
    i, j = i[near], j[near]
    s1 = np.sin((phi[j] - phi[i]) * 0.5)
    s2 = np.sin((lam[j] - lam[i]) * 0.5)
    h = s1 * s1 + cos[i] * cos[j] * s2 * s2
    limit = hav_limit(distance)
    ok = h <= limit
    for k in np.flatnonzero(np.abs(h - limit) <= _BORDER * limit):
        a, b = int(i[k]), int(j[k])
        ok[k] = hav(float(phi[a]), float(lam[a]), float(phi[b]), float(lam[b])) <= limit
    i, j, h = i[ok], j[ok], h[ok]
    metres = 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
    score = (metres / distance) ** 2 + ((t[j] - t[i]) / window) ** 2
    return i, j, score


def _ref_edges(reports: pl.DataFrame, alive: np.ndarray) -> Edges:
    """An update joins the live report it refs, when both are on the same side of a split."""
    rows = reports.select("event_id", "status", "pinned", "refs").with_row_index("i")
    live = rows.filter(pl.Series(alive))
    refs = live.select("i", "status", "pinned", "refs").explode("refs").drop_nulls("refs")
    if refs.height == 0:
        return _no_edges()
    targets = live.select(pl.col("i").alias("j"), "event_id", "status", "pinned")
    linked = refs.join(
        targets, left_on=["refs", "status", "pinned"], right_on=["event_id", "status", "pinned"]
    ).filter(pl.col("i") != pl.col("j"))
    return _edges(linked["i"], linked["j"])


def _edges(i: pl.Series, j: pl.Series) -> Edges:
    return i.to_numpy().astype(np.int64), j.to_numpy().astype(np.int64)


def _no_edges() -> Edges:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)


# --- what the caller fetches ------------------------------------------------------------------


def candidate_spans(rules: Rules, reports: pl.DataFrame) -> pl.DataFrame:
    """A superset of the stored reports that may link by proximity to a live, unpinned report
    of ``reports`` (a report frame): per stored type, the times and the box within the reach
    of the batch's reports of a partner type, one span per run of reports close in time (a
    batch of a backlog spans days: its reports' windows, not the days between them, are
    searched). Empty when nothing in the batch links by proximity.

    A span says where stored reports of ``event_type`` that could link to the batch lie:
    observed in [start, end], inside the box west, south, east, north (degrees, WGS 84). The
    store answers it with one index range scan on (status, event_type, observed_at), whatever
    the history behind it. Ordered by status, event_type, start."""
    linkable = reports.filter(~pl.col("pinned") & ~pl.col("cancelled"))
    reaches = {t: rules.reach(t) for t in linkable["event_type"].unique().to_list()}
    limits = _limits(rules, {t: r for t, r in reaches.items() if r is not None})
    t = pl.col("observed_at").dt.epoch("us") / 1e6
    top = pl.max_horizontal(pl.col("south").abs(), pl.col("north").abs()) + pl.col("dlat")
    dlon = pl.min_horizontal(
        pl.col("dlat") / pl.max_horizontal(pl.min_horizontal(top, 90.0).radians().cos(), 1e-6),
        360.0,
    )
    runs = (
        linkable.join(limits, on="event_type")
        .sort("status", "event_type", "observed_at")
        .with_columns(
            ((t - t.shift(1)) > 2 * pl.col("window_s"))
            .fill_null(False)
            .cum_sum()
            .over("status", "event_type")
            .alias("run")
        )
        .group_by("status", "event_type", "run")
        .agg(
            (pl.col("observed_at").min() - pl.col("window").first()).alias("start"),
            (pl.col("observed_at").max() + pl.col("window").first()).alias("end"),
            pl.col("lon").min().alias("west"),
            pl.col("lat").min().alias("south"),
            pl.col("lon").max().alias("east"),
            pl.col("lat").max().alias("north"),
            pl.col("dlat").first(),
            pl.col("partners").first(),
        )
        .with_columns(dlon.alias("dlon"))
    )
    return (
        runs.explode("partners")
        .select(
            "status",
            pl.col("partners").alias("event_type"),
            "start",
            "end",
            pl.col("west") - pl.col("dlon"),
            pl.col("south") - pl.col("dlat"),
            pl.col("east") + pl.col("dlon"),
            pl.col("north") + pl.col("dlat"),
        )
        .sort("status", "event_type", "start")
    )


def _limits(rules: Rules, reaches: Mapping[str, Reach]) -> pl.DataFrame:
    """Per event type: its reach (window, and the latitude margin of its distance on the
    spheroid) and the types it may link to."""
    return pl.DataFrame(
        {
            "event_type": list(reaches),
            "window": [r.window for r in reaches.values()],
            "window_s": [r.window.total_seconds() for r in reaches.values()],
            "dlat": [
                math.degrees(r.distance_m * SPHEROID_MARGIN / EARTH_RADIUS_M)
                for r in reaches.values()
            ],
            "partners": [sorted(rules.partners(t)) for t in reaches],
        },
        schema={
            "event_type": pl.String,
            "window": pl.Duration("us"),
            "window_s": pl.Float64,
            "dlat": pl.Float64,
            "partners": pl.List(pl.String),
        },
    )
