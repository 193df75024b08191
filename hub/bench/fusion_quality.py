"""The quality harness of ``hub bench fusion``: simulated reporting of real incidents, scored.

Real multi-source ground truth is rare, so the benchmark takes the real SFPD incidents of
December 2018 (one per ``Incident ID``, at its real place and time: the hard negatives are the
real city's density) and lets 1 to 4 sources report each one, every report a real contract
event with GPS noise, a delivery delay and now and then a confused ``event_type``. A clusterer
(the naive baseline here, the hub's correlation, or later the whole Kafka + fusion + PostGIS
path) groups the reports; B-cubed precision, recall and F1 compare its groups with the truth.

Generator, per true incident (every random draw is made for every variant in the same order, so
the stress variants of one seed differ only in the knob they turn):

* **sources**: 1..4 (``sources_weights``). A source is an automated system (``system_share``:
  a hotline or a sensor network, identified by its system name) or a resident reporter of the
  incident's community or, with ``neighbour_share``, of a neighbouring one (polygons within
  ``neighbour_distance_m`` of the community's polygon), identified by a pseudonym within that
  community's system. Sources are drawn with replacement from small pools, so the same reporter
  or system now and then reports one incident twice, as in life: it does not corroborate.
* **place**: the true point displaced by isotropic normal noise of ``sigma_m * noise`` metres
  per axis, converted to degrees with the ellipsoid's radii of curvature at the latitude.
* **time**: ``observed_at`` is the true time (SFPD times are to the minute; ``time_jitter_s``
  adds normal jitter, off by default because the issue asks for noise in place, not in time);
  the report arrives ``delay`` later: exponential (mean ``delay_mean_s``) capped at
  ``delay_cap_s``. ``arrival_order`` ranks reports by arrival.
* **type**: with probability ``confusion`` the event_type is a related one (``RELATED_TYPES``).
* **community_id**: the neighbourhood polygon containing the noisy point, assigned with
  ``geo.assign.CommunityIndex`` as fusion would; a point that noise pushed off every polygon
  (into the bay) takes the nearest polygon, since fusion would dead-letter an event without a
  community and this benchmark measures correlation, not the dead-letter path.
* **density** ``d``: the month is folded onto ``ceil(31 / d)`` days: day ``k`` of the data moves
  to day ``k // d`` at the same wall-clock time, so ``d`` real days are overlaid on one and the
  daily rhythm (quiet nights, busy evenings) is kept while incidents per day grow ``d``-fold.
  A linear squeeze of the time axis would instead pack a day's rhythm into ``1/d`` of a day.
"""

from __future__ import annotations

import csv
import math
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely import STRtree

from connectors.fields import pseudonym, rfc3339, value_resolver
from connectors.mapping import Mapping as CsvMapping
from connectors.mapping import load_mapping
from geo.assign import UNASSIGNED, CommunityIndex
from hub.bench.workload import NEIGHBOURHOODS, ROOT, SFPD_CSV, sf_incidents
from schemas.event import Event

SFPD_MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents.toml"
_ZONE = ZoneInfo("America/Los_Angeles")
_NS = uuid.UUID("0b7e6a52-3c1d-4f8e-a6b9-5d2c8e1f4a73")
# Not a secret: bench pseudonyms only need to be stable across runs, and unlinkable to nothing.
_BENCH_REPORTER_KEY = b"hub-bench-fusion"

# Automated systems that report incidents: (source.system, source.connector). Their system name
# is their identity, so two reports from one of them never corroborate each other.
SYSTEMS: tuple[tuple[str, str], ...] = (("sf-311-hotline", "hotline"), ("sensor-network", "mqtt"))
RESIDENT_CONNECTOR = "webhook"

# Types a reporter plausibly mistakes for each other (symmetric). The hub's table of compatible
# types should cover these pairs, or confused reports split off their incident. A type with no
# entry is mistaken for the generic "other" (a reporter unsure what it saw).
_RELATED_PAIRS: tuple[tuple[str, str], ...] = (
    ("fire", "smoke"),
    ("traffic_collision", "medical"),
    ("suicide", "medical"),
    ("larceny_theft", "burglary"),
    ("larceny_theft", "robbery"),
    ("larceny_theft", "stolen_property"),
    ("robbery", "assault"),
    ("homicide", "assault"),
    ("malicious_mischief", "vandalism"),
    ("motor_vehicle_theft", "recovered_vehicle"),
    ("motor_vehicle_theft", "vehicle_misplaced"),
    ("drug_offense", "drug_violation"),
    ("weapons_offense", "weapons_carrying_etc"),
    ("suspicious_occ", "suspicious"),
    ("fraud", "forgery_and_counterfeiting"),
    ("fraud", "embezzlement"),
    ("family_offense", "offences_against_the_family_and_children"),
    ("sex_offense", "rape"),
    ("disorderly_conduct", "civil_sidewalks"),
    ("other_miscellaneous", "other"),
    ("other_miscellaneous", "other_offenses"),
    ("other_miscellaneous", "non_criminal"),
)
FALLBACK_RELATED = "other"


def _related_table(pairs: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = defaultdict(list)
    for a, b in pairs:
        table[a].append(b)
        table[b].append(a)
    return {k: tuple(v) for k, v in table.items()}


RELATED_TYPES: dict[str, tuple[str, ...]] = _related_table(_RELATED_PAIRS)


def related_types(event_type: str) -> tuple[str, ...]:
    """What ``event_type`` may be confused with (never itself)."""
    # FALLBACK_RELATED has an entry of its own, so no type is ever confused with itself.
    return RELATED_TYPES.get(event_type) or (FALLBACK_RELATED,)


# --- the true incidents ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrueIncident:
    incident_id: str  # SFPD "Incident ID"
    row_id: str  # the first row of that incident in the file
    observed_at: datetime  # aware, America/Los_Angeles
    lon: float
    lat: float
    community: str  # "Analysis Neighborhood"
    event_type: str  # the connector's mapping of "Incident Category"
    fields: tuple[tuple[str, str], ...]  # the other [event] fields the mapping gives the row


@cache
def true_incidents(
    path: Path = SFPD_CSV, mapping_path: Path = SFPD_MAPPING
) -> tuple[TrueIncident, ...]:
    """One incident per ``Incident ID``: its first row in file order among those
    ``sf_incidents`` keeps (coordinates and a neighbourhood). Rows of one incident share place
    and time in this file; they differ in their incident code, hence the first one decides."""
    mapping = load_mapping(mapping_path)
    rows = _rows_by_id(path, mapping)
    resolve = _event_fields(mapping)
    out: dict[str, TrueIncident] = {}
    for inc in sf_incidents(path):
        row = rows[inc.row_id]
        incident_id = row["Incident ID"] or inc.row_id
        if incident_id in out:
            continue
        fields = resolve(row)
        out[incident_id] = TrueIncident(
            incident_id=incident_id,
            row_id=inc.row_id,
            observed_at=datetime.fromisoformat(inc.observed_at),
            lon=inc.lon,
            lat=inc.lat,
            community=inc.community,
            event_type=fields.pop("event_type"),
            fields=tuple(sorted(fields.items())),
        )
    return tuple(out.values())


def _rows_by_id(path: Path, mapping: CsvMapping) -> dict[str, dict[str, str | None]]:
    # sf_incidents keeps only some columns; the Incident ID and the mapped columns come from here.
    with path.open(newline="", encoding=mapping.csv.encoding) as f:
        reader = csv.DictReader(f, delimiter=mapping.csv.delimiter)
        return {row[mapping.source.id]: dict(row) for row in reader}


def _event_fields(mapping: CsvMapping) -> Callable[[dict[str, str | None]], dict[str, str]]:
    """Row -> the [event] values exactly as the CSV connector resolves them (same code)."""
    nulls = frozenset(mapping.csv.null_values)
    names = ("category", "severity", "urgency", "certainty", "status", "event_type")
    resolvers = {n: value_resolver(n, getattr(mapping.event, n), nulls) for n in names}
    return lambda row: {n: resolve(row) for n, resolve in resolvers.items()}


def fold_days(incidents: Sequence[TrueIncident], density: int) -> list[TrueIncident]:
    """The same incidents on ``density`` times fewer days: day ``k`` (counted from the first
    incident's local date) moves to day ``k // density``, wall-clock time kept."""
    if density < 1:
        raise ValueError("density must be a whole number >= 1")
    if density == 1 or not incidents:
        return list(incidents)
    first = min(i.observed_at.astimezone(_ZONE).date() for i in incidents)
    return [replace(i, observed_at=_fold(i.observed_at, first, density)) for i in incidents]


def _fold(ts: datetime, first: date, density: int) -> datetime:
    local = ts.astimezone(_ZONE)
    day = first + timedelta(days=(local.date() - first).days // density)
    return datetime.combine(day, local.time(), tzinfo=_ZONE)


# --- the communities ------------------------------------------------------------------------


def local_metric(lon0: float, lat0: float) -> Transformer:
    """WGS84 -> metres of an azimuthal equidistant projection centred on (lon0, lat0): at a
    city's scale its distances are exact to well under 0.1 %, wherever the city is."""
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    return Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)


@dataclass(frozen=True)
class World:
    """The communities reports are assigned to, and who counts as whose neighbour."""

    index: CommunityIndex
    neighbours: dict[str, tuple[str, ...]]
    tree: STRtree  # over the polygons, for the nearest one to a point outside all of them

    def community_of(self, lon: np.ndarray, lat: np.ndarray) -> list[str]:
        idx = self.index.assign(lon, lat)
        outside = np.flatnonzero(idx == UNASSIGNED)
        if len(outside):
            points = shapely.points(lon[outside], lat[outside])
            # Degrees are no metres, but the nearest of 41 polygons a few metres off a
            # shoreline is the same in either; ties go to the lowest index (deterministic).
            found = self.tree.query_nearest(points, all_matches=False)
            idx[outside[found[0]]] = found[1]
        return [self.index.ids[i] for i in idx]


def build_world(
    ids: Sequence[str], polygons: Sequence[Any], neighbour_distance_m: float = 2000.0
) -> World:
    return World(
        CommunityIndex.build(ids, polygons),
        neighbours_within(ids, polygons, neighbour_distance_m),
        STRtree(np.asarray(polygons, dtype=object)),
    )


def neighbours_within(
    ids: Sequence[str], polygons: Sequence[Any], distance_m: float
) -> dict[str, tuple[str, ...]]:
    """Community -> the other communities whose polygon lies within ``distance_m`` of its own,
    measured in metres (a local equidistant projection), not degrees."""
    geoms = np.asarray(polygons, dtype=object)
    lon0, lat0 = shapely.centroid(shapely.union_all(geoms)).coords[0]
    to_m = local_metric(lon0, lat0)
    metric = shapely.transform(geoms, lambda xy: np.column_stack(to_m.transform(*xy.T)))
    left, right = STRtree(metric).query(metric, predicate="dwithin", distance=distance_m)
    found: dict[str, set[str]] = {i: set() for i in ids}
    for a, b in zip(left, right, strict=True):
        if a != b:
            found[ids[a]].add(ids[b])
    return {k: tuple(sorted(v)) for k, v in found.items()}


@cache
def sf_world(path: Path = NEIGHBOURHOODS, neighbour_distance_m: float = 2000.0) -> World:
    """The 41 SF Analysis Neighbourhoods, read as ``hub community import`` reads them."""
    from hub.store.communities import read_communities  # pulls in psycopg: only when needed

    rows, _ = read_communities(path, "nhood", "nhood")
    return build_world([r.id for r in rows], [r.geom for r in rows], neighbour_distance_m)


# --- the generator --------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorParams:
    seed: int = 7
    sigma_m: float = 50.0  # GPS noise per axis (metres)
    noise: float = 1.0  # stress knob: multiplies sigma_m
    density: int = 1  # stress knob: days folded onto one (see the module docstring)
    delay_mean_s: float = 180.0
    delay_cap_s: float = 1800.0
    confusion: float = 0.05
    sources_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)  # P(1 source), P(2) ...
    system_share: float = 0.2  # of sources: an automated system rather than a resident
    neighbour_share: float = 0.3  # of resident sources: from a neighbouring community
    reporters_per_community: int = 100
    time_jitter_s: float = 0.0  # normal jitter of observed_at around the true time
    id_salt: str = ""  # set per run to get fresh event ids against the same database

    def variant_tag(self) -> str:
        """Distinct per parameter set, so each variant's events have ids of their own."""
        return "|".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


@dataclass(frozen=True, slots=True)
class GeneratedReport:
    report_id: str  # the event_id
    incident_id: str  # the true incident it reports
    arrival_order: int  # 0-based rank by arrival time
    arrival_s: float  # epoch seconds: observed_at + delay
    observed_s: float  # epoch seconds of observed_at
    lon: float
    lat: float
    event_type: str
    true_event_type: str
    community_id: str
    source_key: str  # independence: "system/reporter" of a resident, the system name otherwise
    displacement_m: float  # the noise drawn, for tests and diagnostics
    event: bytes  # the contract event, JSON

    @property
    def delay_s(self) -> float:
        return self.arrival_s - self.observed_s


@dataclass
class _Draws:
    """Every random number of a run, drawn in one fixed order."""

    incident: np.ndarray  # report -> index of its true incident
    is_system: np.ndarray
    system: np.ndarray
    from_neighbour: np.ndarray
    neighbour_u: np.ndarray  # uniform [0, 1): which neighbour
    reporter: np.ndarray
    east: np.ndarray  # standard normal
    north: np.ndarray
    delay: np.ndarray  # exponential with mean 1
    confused: np.ndarray
    partner_u: np.ndarray  # uniform [0, 1): which related type
    jitter: np.ndarray  # standard normal


def _draw(n_incidents: int, params: GeneratorParams) -> _Draws:
    rng = np.random.default_rng(params.seed)
    weights = np.asarray(params.sources_weights, dtype=float)
    counts = rng.choice(np.arange(1, len(weights) + 1), size=n_incidents, p=weights / weights.sum())
    n = int(counts.sum())
    return _Draws(
        incident=np.repeat(np.arange(n_incidents), counts),
        is_system=rng.random(n) < params.system_share,
        system=rng.integers(0, len(SYSTEMS), n),
        from_neighbour=rng.random(n) < params.neighbour_share,
        neighbour_u=rng.random(n),
        reporter=rng.integers(0, params.reporters_per_community, n),
        east=rng.standard_normal(n),
        north=rng.standard_normal(n),
        delay=rng.exponential(1.0, n),
        confused=rng.random(n) < params.confusion,
        partner_u=rng.random(n),
        jitter=rng.standard_normal(n),
    )


# WGS84 ellipsoid: metres per radian along the meridian (M) and the parallel (N cos lat).
_A, _E2 = 6_378_137.0, 6.694_379_990_14e-3


def metres_to_degrees(
    east_m: np.ndarray, north_m: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Small displacements in metres -> (dlon, dlat) in degrees at latitude ``lat``."""
    phi = np.radians(lat)
    w = 1.0 - _E2 * np.sin(phi) ** 2
    meridian = _A * (1.0 - _E2) / w**1.5
    prime_vertical = _A / np.sqrt(w)
    return np.degrees(east_m / (prime_vertical * np.cos(phi))), np.degrees(north_m / meridian)


def generate(
    incidents: Sequence[TrueIncident] | None = None,
    params: GeneratorParams = GeneratorParams(),
    world: World | None = None,
) -> list[GeneratedReport]:
    """The reports of ``incidents`` (default: all real ones) in arrival order."""
    incidents = fold_days(true_incidents() if incidents is None else incidents, params.density)
    world = world or sf_world()
    d = _draw(len(incidents), params)
    inc = d.incident
    true_lon = np.array([i.lon for i in incidents])[inc]
    true_lat = np.array([i.lat for i in incidents])[inc]
    sigma = params.sigma_m * params.noise
    dlon, dlat = metres_to_degrees(d.east * sigma, d.north * sigma, true_lat)
    lon, lat = np.round(true_lon + dlon, 7), np.round(true_lat + dlat, 7)
    epoch = np.array([i.observed_at.timestamp() for i in incidents])[inc]
    observed = epoch + d.jitter * params.time_jitter_s
    arrival = observed + np.minimum(d.delay * params.delay_mean_s, params.delay_cap_s)
    order = np.lexsort((np.arange(len(inc)), arrival))  # ties: generation order
    communities = world.community_of(lon, lat)
    tag = params.variant_tag()
    out = []
    for rank, r in enumerate(order.tolist()):
        incident = incidents[inc[r]]
        system, connector, reporter, key = _source(incident, r, d, world, params)
        event_type = _event_type(incident.event_type, bool(d.confused[r]), d.partner_u[r])
        event = Event.model_validate(
            {
                "event_id": uuid.uuid5(_NS, f"{tag}|{incident.incident_id}|{r}"),
                "community_id": communities[r],
                "source": {"system": system, "connector": connector, "reporter": reporter},
                "kind": "incident",
                **dict(incident.fields),
                "event_type": event_type,
                "observed_at": rfc3339(datetime.fromtimestamp(observed[r], _ZONE)),
                "geometry": {"type": "Point", "coordinates": [float(lon[r]), float(lat[r])]},
                "properties": {"bench": "fusion-quality"},
            }
        )
        out.append(
            GeneratedReport(
                report_id=str(event.event_id),
                incident_id=incident.incident_id,
                arrival_order=rank,
                arrival_s=float(arrival[r]),
                observed_s=float(observed[r]),
                lon=float(lon[r]),
                lat=float(lat[r]),
                event_type=event_type,
                true_event_type=incident.event_type,
                community_id=communities[r],
                source_key=key,
                displacement_m=float(math.hypot(d.east[r], d.north[r]) * sigma),
                event=event.to_json(),
            )
        )
    return out


def _source(
    incident: TrueIncident, r: int, d: _Draws, world: World, params: GeneratorParams
) -> tuple[str, str, str | None, str]:
    """(system, connector, reporter pseudonym, independence key) of report ``r``."""
    if d.is_system[r]:
        system, connector = SYSTEMS[d.system[r]]
        return system, connector, None, system
    community = incident.community
    near = world.neighbours.get(community, ())
    if d.from_neighbour[r] and near:
        community = near[int(d.neighbour_u[r] * len(near))]
    system = community_system(community)
    reporter = pseudonym(_BENCH_REPORTER_KEY, system, f"resident-{d.reporter[r]}")
    return system, RESIDENT_CONNECTOR, reporter, f"{system}/{reporter}"


def _event_type(true_type: str, confused: bool, u: float) -> str:
    if not confused:
        return true_type
    options = related_types(true_type)
    return options[int(u * len(options))]


def community_system(community: str) -> str:
    """The source.system of a community's residents: its grid-management system."""
    return "grid." + re.sub(r"[^a-z0-9]+", "-", community.lower()).strip("-")


# --- scoring --------------------------------------------------------------------------------

ClusterId = Hashable


class Clusterer(Protocol):
    """Groups reports into incidents: report_id -> cluster id (any hashable label)."""

    def __call__(self, reports: Sequence[GeneratedReport], /) -> Mapping[str, ClusterId]: ...


@dataclass(frozen=True)
class BCubed:
    precision: float
    recall: float
    f1: float


def bcubed(predicted: Mapping[str, ClusterId], truth: Mapping[str, ClusterId]) -> BCubed:
    """B-cubed (Bagga & Baldwin 1998), averaged over items, in O(n).

    A report's precision is |its predicted cluster ∩ its true cluster| / |predicted cluster|;
    summed over the reports sharing one (predicted, true) pair that is n_pt² / n_p, so three
    counters suffice. F1 is the harmonic mean of the averaged precision and recall.
    """
    if predicted.keys() != truth.keys():
        raise ValueError("predicted and truth must label the same reports")
    if not truth:
        raise ValueError("B-cubed of no reports is undefined")
    pairs = Counter((predicted[k], t) for k, t in truth.items())
    size_p = Counter(predicted.values())
    size_t = Counter(truth.values())
    precision = sum(n * n / size_p[p] for (p, _), n in pairs.items()) / len(truth)
    recall = sum(n * n / size_t[t] for (_, t), n in pairs.items()) / len(truth)
    return BCubed(precision, recall, 2 * precision * recall / (precision + recall))


@dataclass
class _Cluster:
    sx: float  # sums of member coordinates (metres), for the centroid
    sy: float
    n: int
    t_min: float
    t_max: float
    keys: list[tuple[int, int, int]] = field(default_factory=list)  # where it is in the grid

    @property
    def centroid(self) -> tuple[float, float]:
        return self.sx / self.n, self.sy / self.n


def naive_baseline(
    reports: Sequence[GeneratedReport], *, radius_m: float = 300.0, window_s: float = 1800.0
) -> dict[str, int]:
    """The issue's naive baseline: in arrival order, each report joins the nearest open cluster
    whose centroid is within ``radius_m``, or starts one. A cluster is open for a report whose
    ``observed_at`` lies within ``window_s`` of the cluster's span of observed times. Types and
    sources are ignored.

    The centroid (mean of the members, in metres) rather than the first report: with GPS noise
    the first report is as far off as any, the mean converges on the true place.
    Spatial hashing: a cluster sits in the grid cell (``radius_m`` square) of its centroid, once
    per ``window_s`` time bucket its span touches; a report only looks at the 3 x 3 cells and
    3 buckets around it, which hold every cluster that can qualify.
    """
    if not reports:
        return {}
    x, y = _project(reports)
    clusters: list[_Cluster] = []
    grid: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    out: dict[str, int] = {}
    for i in sorted(range(len(reports)), key=lambda j: reports[j].arrival_order):
        px, py, t = float(x[i]), float(y[i]), reports[i].observed_s
        best = _nearest_open(grid, clusters, px, py, t, radius_m, window_s)
        if best is None:
            best = len(clusters)
            clusters.append(_Cluster(px, py, 1, t, t))
        else:
            c = clusters[best]
            c.sx, c.sy, c.n = c.sx + px, c.sy + py, c.n + 1
            c.t_min, c.t_max = min(c.t_min, t), max(c.t_max, t)
        _rehash(grid, best, clusters[best], radius_m, window_s)
        out[reports[i].report_id] = best
    return out


def _project(reports: Sequence[GeneratedReport]) -> tuple[np.ndarray, np.ndarray]:
    lon = np.array([r.lon for r in reports])
    lat = np.array([r.lat for r in reports])
    to_m = local_metric(float(lon.mean()), float(lat.mean()))
    x, y = to_m.transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def _nearest_open(
    grid: Mapping[tuple[int, int, int], set[int]],
    clusters: Sequence[_Cluster],
    px: float,
    py: float,
    t: float,
    radius_m: float,
    window_s: float,
) -> int | None:
    cx, cy, tb = math.floor(px / radius_m), math.floor(py / radius_m), math.floor(t / window_s)
    best, best_d2 = None, radius_m * radius_m
    for gx in (cx - 1, cx, cx + 1):
        for gy in (cy - 1, cy, cy + 1):
            for gt in (tb - 1, tb, tb + 1):
                for k in grid.get((gx, gy, gt), ()):
                    c = clusters[k]
                    if not c.t_min - window_s <= t <= c.t_max + window_s:
                        continue
                    mx, my = c.centroid
                    d2 = (mx - px) ** 2 + (my - py) ** 2
                    # Ties go to the older cluster, so the result never depends on set order.
                    if d2 < best_d2 or (d2 == best_d2 and best is not None and k < best):
                        best, best_d2 = k, d2
    return best


def _rehash(
    grid: dict[tuple[int, int, int], set[int]],
    k: int,
    c: _Cluster,
    radius_m: float,
    window_s: float,
) -> None:
    mx, my = c.centroid
    cx, cy = math.floor(mx / radius_m), math.floor(my / radius_m)
    lo, hi = math.floor(c.t_min / window_s), math.floor(c.t_max / window_s)
    keys = [(cx, cy, tb) for tb in range(lo, hi + 1)]
    if keys == c.keys:
        return
    for key in c.keys:
        grid[key].discard(k)
    for key in keys:
        grid[key].add(k)
    c.keys = keys


def corroborated_share(
    reports: Sequence[GeneratedReport], clusters: Mapping[str, ClusterId]
) -> float:
    """Share of clusters holding >= 2 independent sources (distinct ``source_key``s)."""
    sources: dict[ClusterId, set[str]] = defaultdict(set)
    for r in reports:
        sources[clusters[r.report_id]].add(r.source_key)
    if not sources:
        return 0.0
    return sum(len(s) >= 2 for s in sources.values()) / len(sources)


def evaluate(reports: Sequence[GeneratedReport], clusterer: Clusterer) -> dict[str, float | int]:
    """Run ``clusterer`` on ``reports`` and score it against the true incidents.

    A report the clusterer leaves out (e.g. lost on the way through the pipeline) counts as an
    incident of its own, and is counted in ``unclustered``.
    """
    started = time.perf_counter()
    found = clusterer(reports)
    seconds = time.perf_counter() - started
    ids = {r.report_id for r in reports}
    if not found.keys() <= ids:
        raise ValueError("the clusterer labelled reports it was not given")
    predicted: dict[str, ClusterId] = {r.report_id: ("unclustered", r.report_id) for r in reports}
    predicted.update(found)
    truth = {r.report_id: r.incident_id for r in reports}
    score = bcubed(predicted, truth)
    n = len(reports)
    n_pred, n_true = len(set(predicted.values())), len(set(truth.values()))
    return {
        "reports": n,
        "unclustered": n - len(found),
        "true_incidents": n_true,
        "predicted_incidents": n_pred,
        "precision": score.precision,
        "recall": score.recall,
        "f1": score.f1,
        "corroborated_share": corroborated_share(reports, predicted),
        "true_corroborated_share": corroborated_share(reports, truth),
        "incidents_per_1000_reports": 1000 * n_pred / n,
        "true_incidents_per_1000_reports": 1000 * n_true / n,
        "seconds": seconds,
        "reports_per_s": n / seconds if seconds > 0 else math.inf,
    }


# Stress variants of the issue: (name, overrides of GeneratorParams).
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default", {}),
    ("noise x2", {"noise": 2.0}),
    ("density x2", {"density": 2}),
    ("density x4", {"density": 4}),
)


def sweep(
    clusterer: Clusterer | None,
    *,
    name: str = "hub",
    incidents: Sequence[TrueIncident] | None = None,
    params: GeneratorParams = GeneratorParams(),
    variants: Sequence[tuple[str, dict[str, Any]]] = VARIANTS,
    world: World | None = None,
) -> list[dict[str, Any]]:
    """Rows for a table: per variant, ``clusterer`` (unless None) and the naive baseline, scored
    on the same reports."""
    methods: list[tuple[str, Clusterer]] = [] if clusterer is None else [(name, clusterer)]
    methods.append(("naive baseline", naive_baseline))
    rows = []
    for variant, overrides in variants:
        p = replace(params, **overrides)
        started = time.perf_counter()
        reports = generate(incidents, p, world)
        generated_s = time.perf_counter() - started
        for method, run in methods:
            row: dict[str, Any] = {"variant": variant, "method": method}
            row |= {"sigma_m": p.sigma_m * p.noise, "density": p.density, "seed": p.seed}
            row |= evaluate(reports, run)
            row["generate_seconds"] = generated_s
            rows.append(row)
    return rows
