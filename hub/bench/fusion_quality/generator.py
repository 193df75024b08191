"""Simulated multi-source reporting of true incidents: every report a real contract event.

Per true incident (every random draw is made for every variant in the same order, so the
stress variants of one seed differ only in the knob they turn; draws added later come after
the earlier ones, so adding them changed none of those):

* **sources**: 1..4 (``sources_weights``), or the incident's own ``sources`` (a flood). A
  source is an automated system (``system_share``: a hotline or a sensor network, identified
  by its system name) or a resident reporter of the incident's community or, with
  ``neighbour_share``, of a neighbouring one (polygons within ``neighbour_distance_m`` of the
  community's polygon), identified by a pseudonym within that community's system. Sources are
  drawn with replacement from small pools, so the same reporter or system now and then reports
  one incident twice, as in life: it does not corroborate.
* **place**: the true point displaced by isotropic normal noise of ``sigma_m * noise`` metres
  per axis, converted to degrees with the ellipsoid's radii of curvature at the latitude. An
  area incident's reports first spread uniformly over its disc (``extent_m``). The
  ``offset_source`` system geocodes to the street's centroid instead of the place: its reports
  of one incident are all moved by the same 80-150 m (``offset_m``, uniform) in the same
  direction (uniform), drawn per incident, before the noise.
* **time**: ``observed_at`` is the true time, to the second (SFPD times are to the minute;
  ``time_jitter_s`` adds normal jitter, off by default because the issue asks for noise in
  place, not in time), spread uniformly over ``duration_s`` for a lasting incident; the report
  arrives ``delay`` later: exponential (mean ``delay_mean_s``) capped at ``delay_cap_s``.
  ``arrival_order`` ranks reports by arrival.
* **type**: the incident's own, or one of its ``report_types`` (equally often); then, with
  probability ``confusion``, a related one (``RELATED_TYPES``).
* **community_id**: the neighbourhood polygon containing the noisy point, assigned with
  ``geo.assign.CommunityIndex`` as fusion would; a point that noise pushed off every polygon
  (into the bay) takes the nearest polygon, since fusion would dead-letter an event without a
  community and this benchmark measures correlation, not the dead-letter path.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from connectors.fields import pseudonym, rfc3339
from hub.bench.fusion_quality.params import GeneratorParams
from hub.bench.fusion_quality.scenarios import prepare
from hub.bench.fusion_quality.truth import ZONE, TrueIncident, base_incidents
from hub.bench.fusion_quality.world import World, metres_to_degrees, sf_world
from schemas.event import Event

_NS = uuid.UUID("0b7e6a52-3c1d-4f8e-a6b9-5d2c8e1f4a73")
# Not a secret: bench pseudonyms only need to be stable across runs, and unlinkable to nothing.
_BENCH_REPORTER_KEY = b"hub-bench-fusion"

# Automated systems that report incidents: (source.system, source.connector). Their system name
# is their identity, so two reports from one of them never corroborate each other.
SYSTEMS: tuple[tuple[str, str], ...] = (("sf-311-hotline", "hotline"), ("sensor-network", "mqtt"))
_SYSTEM_NAMES = np.array([s for s, _ in SYSTEMS])
RESIDENT_CONNECTOR = "webhook"

# Types a reporter plausibly mistakes for each other (symmetric). The hub's table of compatible
# types should cover these pairs, or confused reports split off their incident. A type with no
# entry is mistaken for the generic "other" (a reporter unsure what it saw).
_RELATED_PAIRS: tuple[tuple[str, str], ...] = (
    ("fire", "smoke"),
    ("traffic_collision", "medical"),
    ("suicide", "medical"),
    ("flood", "water_level"),  # a gauge of the sensor network names the rising water
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
    displacement_m: float  # metres from its incident's true point (noise, extent, offset)
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
    spread_r: np.ndarray  # uniform [0, 1): where in an area incident's disc (radius)
    spread_angle: np.ndarray  # (bearing)
    spread_t: np.ndarray  # when in a lasting incident's duration
    type_u: np.ndarray  # which of the incident's report_types
    offset_angle: np.ndarray  # per INCIDENT, uniform [0, 1): the offset source's bearing
    offset_u: np.ndarray  # per incident: where in offset_m its displacement lies


def _draw(incidents: Sequence[TrueIncident], params: GeneratorParams) -> _Draws:
    rng = np.random.default_rng(params.seed)
    weights = np.asarray(params.sources_weights, dtype=float)
    n_incidents = len(incidents)
    counts = rng.choice(np.arange(1, len(weights) + 1), size=n_incidents, p=weights / weights.sum())
    own = np.array([i.sources for i in incidents], dtype=counts.dtype)
    counts = np.where(own > 0, own, counts)
    n = int(counts.sum())
    # Keyword arguments are evaluated in the order written: that order is the draw order.
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
        spread_r=rng.random(n),
        spread_angle=rng.random(n),
        spread_t=rng.random(n),
        type_u=rng.random(n),
        offset_angle=rng.random(n_incidents),
        offset_u=rng.random(n_incidents),
    )


def _per_report(incidents: Sequence[TrueIncident], name: str, inc: np.ndarray) -> np.ndarray:
    return np.array([getattr(i, name) for i in incidents], dtype=float)[inc]


def _displacement(
    incidents: Sequence[TrueIncident], d: _Draws, params: GeneratorParams
) -> tuple[np.ndarray, np.ndarray]:
    """Metres east and north of each report from its incident's true point."""
    sigma = params.sigma_m * params.noise
    east, north = d.east * sigma, d.north * sigma
    extent = _per_report(incidents, "extent_m", d.incident)
    if extent.any():
        # sqrt: uniform over the disc's area, not crowded at its centre
        r, bearing = extent * np.sqrt(d.spread_r), 2 * np.pi * d.spread_angle
        east, north = east + r * np.sin(bearing), north + r * np.cos(bearing)
    if params.offset_source:
        if params.offset_source not in _SYSTEM_NAMES:
            raise ValueError(f"offset_source {params.offset_source!r} is none of {SYSTEMS}")
        lo, hi = params.offset_m
        shifted = d.is_system & (_SYSTEM_NAMES[d.system] == params.offset_source)
        r = np.where(shifted, (lo + (hi - lo) * d.offset_u)[d.incident], 0.0)
        bearing = 2 * np.pi * d.offset_angle[d.incident]
        east, north = east + r * np.sin(bearing), north + r * np.cos(bearing)
    return east, north


def _observed(incidents: Sequence[TrueIncident], d: _Draws, params: GeneratorParams) -> np.ndarray:
    """Epoch seconds of each report's observed_at, to the second (as the feeds give times)."""
    epoch = np.array([i.observed_at.timestamp() for i in incidents])[d.incident]
    lasting = _per_report(incidents, "duration_s", d.incident) * d.spread_t
    return np.round(epoch + d.jitter * params.time_jitter_s + lasting)


def generate(
    incidents: Sequence[TrueIncident] | None = None,
    params: GeneratorParams = GeneratorParams(),
    world: World | None = None,
) -> list[GeneratedReport]:
    """The reports of ``incidents`` (default: all of ``params.dataset``) in arrival order, after
    the variant's scenarios (``scenarios.prepare``)."""
    base = base_incidents(params.dataset) if incidents is None else incidents
    incidents = prepare(base, params)
    world = world or sf_world()
    d = _draw(incidents, params)
    inc = d.incident
    true_lon = np.array([i.lon for i in incidents])[inc]
    true_lat = np.array([i.lat for i in incidents])[inc]
    east, north = _displacement(incidents, d, params)
    dlon, dlat = metres_to_degrees(east, north, true_lat)
    lon, lat = np.round(true_lon + dlon, 7), np.round(true_lat + dlat, 7)
    observed = _observed(incidents, d, params)
    arrival = observed + np.minimum(d.delay * params.delay_mean_s, params.delay_cap_s)
    order = np.lexsort((np.arange(len(inc)), arrival))  # ties: generation order
    communities = world.community_of(lon, lat)
    tag = params.variant_tag()
    out = []
    for rank, r in enumerate(order.tolist()):
        incident = incidents[inc[r]]
        system, connector, reporter, key = _source(incident, r, d, world)
        event_type = _event_type(_said_type(incident, d.type_u[r]), d, r)
        event = Event.model_validate(
            {
                "event_id": uuid.uuid5(_NS, f"{tag}|{incident.incident_id}|{r}"),
                "community_id": communities[r],
                "source": {"system": system, "connector": connector, "reporter": reporter},
                "kind": "incident",
                **dict(incident.fields),
                "event_type": event_type,
                "observed_at": rfc3339(datetime.fromtimestamp(observed[r], ZONE)),
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
                displacement_m=math.hypot(east[r], north[r]),
                event=event.to_json(),
            )
        )
    return out


def _source(
    incident: TrueIncident, r: int, d: _Draws, world: World
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


def _said_type(incident: TrueIncident, u: float) -> str:
    """The type the source gives before any confusion: the incident's, or one it is seen as."""
    kinds = incident.report_types
    return kinds[int(u * len(kinds))] if kinds else incident.event_type


def _event_type(said: str, d: _Draws, r: int) -> str:
    if not d.confused[r]:
        return said
    options = related_types(said)
    return options[int(d.partner_u[r] * len(options))]


def community_system(community: str) -> str:
    """The source.system of a community's residents: its grid-management system."""
    return "grid." + re.sub(r"[^a-z0-9]+", "-", community.lower()).strip("-")
