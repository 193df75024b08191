"""Harder situations built from the real incidents: nothing invented but what is said here.

Each scenario transforms the list of true incidents before the reports are drawn, with a
random stream of its own (``numpy`` seeded by ``(seed, stream)``), so it is deterministic per
seed and leaves the generator's own draws as they are.

* **hotspots** (``with_hotspots``): the ``hotspots`` real places with the most incidents in the
  data (exact coordinates: SFPD geocodes to a block or a crossing, so the busiest ones recur;
  in December 2018 downtown, the Tenderloin, Twin Peaks, Lakeshore) draw a ``hotspot_share``
  of all incidents, chosen at random. A chosen incident moves to the hotspot of its day (place
  and community), keeping its own real time and type; the days take the hotspots in turn, in
  an order drawn once. So on each day one busy address gets all of that day's chosen incidents
  (at 12 % of December 2018, ~35 distinct incidents in a day, at the real hours of the day,
  many of them minutes apart), as a station or a shelter can on a bad day, and the hub must
  not chain them into one.
* **mixed types** (``with_mixed_types``): a ``mixed_share`` of the incidents, chosen at random,
  becomes a road collision with injured people: ONE true incident whose reports say
  ``traffic_collision`` or ``medical`` (equally often). Beside each, a SECOND true incident:
  an unrelated ``medical`` call at the very same place, 2 to 10 minutes later (uniform, to the
  second), with sources of its own. The compatible-type pair (traffic_collision ~ medical)
  must join the first one's reports without swallowing the second.
* **floods** (``with_floods``): ``floods`` long-lasting area incidents (event_type ``flood``),
  each at the place and time of a real incident chosen at random (a real point of the city,
  at an hour when it is busy), reported ``FLOOD_SOURCES`` times, its reports spread uniformly
  over a disc of ``FLOOD_RADIUS_M`` (about 1 km across) and over ``FLOOD_HOURS``.

The other scenarios are knobs of the generator (``offset_source``) or of time
(``truth.fold_days``, ``truth.storm``); ``prepare`` applies them all in a fixed order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import numpy as np

from hub.bench.fusion_quality.params import GeneratorParams
from hub.bench.fusion_quality.truth import ZONE, TrueIncident, fold_days, storm

# Random streams, one per scenario: (seed, stream) seeds each.
_HOTSPOT_STREAM, _MIXED_STREAM, _FLOOD_STREAM = 1, 2, 3

MIXED_GAP_S = (120.0, 600.0)  # the unrelated medical call comes 2-10 minutes later
COLLISION_TYPES = ("traffic_collision", "medical")  # what people at a collision report

FLOOD_RADIUS_M = 500.0  # its reports lie within ~1 km of each other
FLOOD_HOURS = (3.0, 5.0)  # it lasts 3-5 hours (uniform)
FLOOD_SOURCES = (20, 40)  # reports it gets, uniform, both ends included
FLOOD_FIELDS = (
    ("category", "Met"),
    ("certainty", "Observed"),
    ("severity", "Severe"),
    ("status", "actual"),
    ("urgency", "Immediate"),
)


def prepare(incidents: Sequence[TrueIncident], params: GeneratorParams) -> list[TrueIncident]:
    """The incidents as a variant has them: days folded (density) or packed (storm), then the
    hotspots, the mixed-type pairs and the floods, each when its knob is on."""
    out = fold_days(incidents, params.density)
    if params.storm_hours:
        out = storm(out, params.storm_hours)
    if params.hotspots:
        out = with_hotspots(out, params.hotspots, params.hotspot_share, params.seed)
    if params.mixed_share:
        out = with_mixed_types(out, params.mixed_share, params.seed)
    if params.floods:
        out = with_floods(out, params.floods, params.seed)
    return out


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


# --- hotspots ---------------------------------------------------------------------------------


def hotspot_places(incidents: Sequence[TrueIncident], count: int) -> list[TrueIncident]:
    """The first incident at each of the ``count`` real places with the most incidents (exact
    coordinates; ties in order of longitude, then latitude, so the choice is the data's)."""
    tally = Counter((i.lon, i.lat) for i in incidents)
    top = sorted(tally, key=lambda p: (-tally[p], p))[:count]
    first: dict[tuple[float, float], TrueIncident] = {}
    for i in incidents:
        first.setdefault((i.lon, i.lat), i)
    return [first[p] for p in top]


def with_hotspots(
    incidents: Sequence[TrueIncident], count: int, share: float, seed: int
) -> list[TrueIncident]:
    """``share`` of the incidents moved onto the ``count`` busiest real places, each day's onto
    the day's hotspot (module doc)."""
    places = hotspot_places(incidents, count)
    if not places:
        return list(incidents)
    at_spot = {(p.lon, p.lat) for p in places}
    movable = [k for k, i in enumerate(incidents) if (i.lon, i.lat) not in at_spot]
    n = min(round(share * len(incidents)), len(movable))
    rng = _rng(seed, _HOTSPOT_STREAM)
    chosen = rng.choice(np.asarray(movable, dtype=np.int64), size=n, replace=False).tolist()
    turn = rng.permutation(len(places)).tolist()  # day k's hotspot: turn[k % count]
    first = min(i.observed_at.astimezone(ZONE).date() for i in incidents)
    out = list(incidents)
    for k in chosen:
        day = (incidents[k].observed_at.astimezone(ZONE).date() - first).days
        p = places[turn[day % len(places)]]
        out[k] = replace(out[k], lon=p.lon, lat=p.lat, community=p.community)
    return out


# --- a collision with injured beside an unrelated medical call -------------------------------


def with_mixed_types(
    incidents: Sequence[TrueIncident], share: float, seed: int
) -> list[TrueIncident]:
    """``share`` of the incidents made collisions, each with a medical call beside it; the
    calls follow the incidents in the list (module doc)."""
    rng = _rng(seed, _MIXED_STREAM)
    n = round(share * len(incidents))
    chosen = np.sort(rng.choice(len(incidents), size=n, replace=False)).tolist()
    gaps = np.round(rng.uniform(*MIXED_GAP_S, size=n)).tolist()
    out, calls = list(incidents), []
    for k, gap in zip(chosen, gaps, strict=True):
        out[k] = collision(incidents[k])
        calls.append(medical_call(incidents[k], gap))
    return out + calls


def collision(inc: TrueIncident) -> TrueIncident:
    """The incident as a road collision with injured people, reported as either."""
    return replace(
        inc,
        event_type="traffic_collision",
        report_types=COLLISION_TYPES,
        fields=_with(inc.fields, category="Transport"),
    )


def medical_call(inc: TrueIncident, after_s: float) -> TrueIncident:
    """An unrelated medical call at the place of ``inc``, ``after_s`` seconds later."""
    return replace(
        inc,
        incident_id=f"{inc.incident_id}/medical",
        observed_at=inc.observed_at + timedelta(seconds=after_s),
        event_type="medical",
        report_types=(),
        fields=_with(inc.fields, category="Health"),
    )


def _with(fields: tuple[tuple[str, str], ...], **changes: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((dict(fields) | changes).items()))


# --- floods -----------------------------------------------------------------------------------


def with_floods(incidents: Sequence[TrueIncident], count: int, seed: int) -> list[TrueIncident]:
    """The incidents and ``count`` floods at real incidents' places and times (module doc)."""
    rng = _rng(seed, _FLOOD_STREAM)
    at = rng.choice(len(incidents), size=min(count, len(incidents)), replace=False).tolist()
    hours = rng.uniform(*FLOOD_HOURS, size=len(at)).tolist()
    sources = rng.integers(FLOOD_SOURCES[0], FLOOD_SOURCES[1] + 1, size=len(at)).tolist()
    floods = [
        replace(
            incidents[k],
            incident_id=f"flood-{n}",
            event_type="flood",
            fields=FLOOD_FIELDS,
            sources=s,
            extent_m=FLOOD_RADIUS_M,
            duration_s=round(h * 3600),
            report_types=(),
        )
        for n, (k, h, s) in enumerate(zip(at, hours, sources, strict=True))
    ]
    return list(incidents) + floods
