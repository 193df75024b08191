"""The pure correlation core: links, incidents, verification and the rules file (no database)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import Point, shape

from hub.bench.workload import NEIGHBOURHOODS, Incident, sf_incidents
from hub.fusion.incident.ids import NAMESPACE, esc, seed_texts, source_key
from hub.fusion.incident.incident_rows import point_wkb
from hub.fusion.incident.links import candidate_spans, correlate_frame, report_frame
from hub.fusion.incident.model import (
    SPHEROID_MARGIN,
    Report,
    could_link,
    distance_m,
    independent_sources,
    seed_id,
    select_candidates,
    severity_of,
    successors,
    verification_state,
)
from hub.fusion.incident.reference import IncidentSummary, cluster, neighbourhoods
from hub.fusion.incident.report_rows import escaped, source_keys
from hub.fusion.rules import SHIPPED, Rules, RulesError

RULES = Rules.load()
LA = ZoneInfo("America/Los_Angeles")
T0 = datetime(2018, 12, 16, 9, 29, tzinfo=LA)
M_PER_DEG = 6_371_008.8 * math.pi / 180  # metres per degree of latitude on the sphere
_ids = itertools.count(1)


def moved(lon: float, lat: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """A point ``north_m``/``east_m`` metres away (local flat approximation, fine below 10 km)."""
    return (
        lon + east_m / (M_PER_DEG * math.cos(math.radians(lat))),
        lat + north_m / M_PER_DEG,
    )


def rep(
    event_type: str = "fire",
    at: tuple[float, float] = (-122.4194, 37.7793),
    minutes: float = 0.0,
    *,
    source: str | None = None,
    community: str | None = "Tenderloin",
    **fields: Any,
) -> Report:
    """A report; its event_id grows with each call (so earlier-made reports have smaller ids).
    Its source is a person of its own unless given."""
    number = next(_ids)
    return Report(
        event_id=fields.pop("event_id", uuid.UUID(int=number)),
        event_type=event_type,
        status=fields.pop("status", "actual"),
        observed_at=T0 + timedelta(minutes=minutes),
        lon=at[0],
        lat=at[1],
        community_id=community,
        source_key=source or f"r:{community}:person-{number}",
        **fields,
    )


def partition(assignment: Mapping[uuid.UUID, uuid.UUID]) -> set[frozenset[uuid.UUID]]:
    groups: dict[uuid.UUID, set[uuid.UUID]] = {}
    for event_id, incident in assignment.items():
        groups.setdefault(incident, set()).add(event_id)
    return {frozenset(g) for g in groups.values()}


def together(assignment: Mapping[uuid.UUID, uuid.UUID], *reports: Report) -> bool:
    return len({assignment[r.event_id] for r in reports}) == 1


# --- scenarios of the issue -------------------------------------------------------------------


@cache
def _polygons() -> dict[str, Any]:
    doc = json.loads(Path(NEIGHBOURHOODS).read_text())
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


def _fire_on_a_border() -> tuple[Incident, str]:
    """The first real SFPD fire (arson / fire report) lying on the border with exactly one
    other neighbourhood (boundaries run along street centre lines, where incidents are
    geocoded)."""
    polygons = _polygons()
    for inc in sf_incidents():
        if inc.category not in ("Arson", "Fire Report"):
            continue
        here = Point(inc.lon, inc.lat)
        near = [
            n for n, poly in polygons.items() if n != inc.community and poly.distance(here) < 1e-5
        ]
        if len(near) == 1:
            return inc, near[0]
    raise AssertionError("no fire on a neighbourhood border in the SF data")


def test_cross_boundary_fire_is_one_corroborated_incident() -> None:
    inc, other = _fire_on_a_border()
    polygons = _polygons()
    # Two callers 40 m either side of the border, one in each community.
    for bearing in range(0, 360, 5):
        north, east = 40 * math.cos(math.radians(bearing)), 40 * math.sin(math.radians(bearing))
        a, b = moved(inc.lon, inc.lat, north, east), moved(inc.lon, inc.lat, -north, -east)
        if polygons[inc.community].contains(Point(*a)) and polygons[other].contains(Point(*b)):
            break
    else:
        raise AssertionError("no direction crosses the border")
    t = datetime.fromisoformat(inc.observed_at)
    first = rep(at=a, community=inc.community, source=source_key("p-1", "grid", inc.community))
    second = rep(at=b, community=other, source=source_key("p-2", "grid", other), minutes=4)
    first, second = (
        Report(**{**_fields(r), "observed_at": t + (r.observed_at - T0)}) for r in (first, second)
    )
    assert 79.0 < distance_m(first, second) < 81.0

    incidents = cluster([first, second], RULES)
    assert together(incidents, first, second)
    summary = IncidentSummary.build(incidents[first.event_id], [first, second])
    assert summary.communities == tuple(sorted((inc.community, other)))
    assert (summary.sources, summary.verification) == (2, "corroborated")
    assert summary.event_type == "fire"


def _fields(r: Report) -> dict[str, Any]:
    return {name: getattr(r, name) for name in Report.__slots__}


def test_two_fires_2_km_apart_are_two_incidents() -> None:
    a = rep("fire")
    b = rep("fire", moved(a.lon, a.lat, 1400, 1430), minutes=1)
    assert 1990 < distance_m(a, b) < 2010
    assert partition(cluster([a, b], RULES)) == {frozenset({a.event_id}), frozenset({b.event_id})}


def test_fire_and_medical_at_the_same_place_are_two_incidents() -> None:
    a, b = rep("fire"), rep("medical", minutes=1)
    assert not together(cluster([a, b], RULES), a, b)


def test_same_place_two_hours_apart_are_two_incidents() -> None:
    a, b = rep("fire"), rep("fire", minutes=120)
    assert not together(cluster([a, b], RULES), a, b)


def test_other_never_correlates() -> None:
    a, b = rep("other"), rep("other", minutes=1)
    assert not together(cluster([a, b], RULES), a, b)
    update = rep("other", moved(a.lon, a.lat, 5000), minutes=300, refs=(a.event_id,))
    assert together(cluster([a, update], RULES), a, update)  # the source's own word still holds


def test_same_source_repeat_does_not_corroborate() -> None:
    same_person = [rep(source=source_key("p-1", "grid", "Mission"), minutes=m) for m in (0, 3)]
    same_system = [rep(source=source_key(None, "sfpd-incidents", c)) for c in ("Mission", "SoMa")]
    two_people = [rep(source=source_key(p, "grid", "Mission"), minutes=2) for p in ("p-1", "p-2")]
    for reports, expected in ((same_person, 1), (same_system, 1), (two_people, 2)):
        assert len(set(cluster(reports, RULES).values())) == 1
        assert independent_sources(reports) == expected
    assert verification_state(1) == "reported"
    assert verification_state(2) == "corroborated"


def test_sources_corroborate_only_when_they_agree() -> None:
    def verification(*reports: Report) -> str:
        (incident,) = set(cluster(reports, RULES).values())
        return IncidentSummary.build(incident, reports, rules=RULES).verification

    fire = rep("fire")
    assert verification(fire, rep("fire", moved(fire.lon, fire.lat, 60), minutes=3)) == (
        "corroborated"
    )
    # Inside one incident's extent (fire: 300 m, 30 min), but too far apart to vouch for each
    # other (half of it): two emergencies may share an extent.
    assert verification(fire, rep("fire", moved(fire.lon, fire.lat, 220), minutes=3)) == (
        "reported"
    )
    # A collision and an ambulance call at its place 8 minutes later link (the pair's larger
    # limits, 300 m / 30 min) but agree only within the stricter type's (medical: 15 min).
    crash = rep("traffic_collision")
    late = rep("medical", (crash.lon, crash.lat), minutes=8)
    assert verification(crash, late) == "reported"
    assert verification(crash, rep("medical", (crash.lon, crash.lat), minutes=2)) == (
        "corroborated"
    )


def test_source_keys() -> None:
    # A pseudonym counts per community; a signed sensor per sensor; colons cannot forge a key.
    assert source_key("p", "grid", "A") != source_key("p", "grid", "B")
    assert source_key("s-1", "mqtt", "A", signed_sensor=True) != source_key(
        "s-2", "mqtt", "A", signed_sensor=True
    )
    assert source_key("c", "g", "a:b") != source_key("b:c", "g", "a")
    assert source_key(None, "mqtt", "A") == source_key(None, "mqtt", "B") == "s:mqtt"
    with pytest.raises(ValueError, match="sensor id"):
        source_key(None, "mqtt", "A", signed_sensor=True)


def test_a_decision_wins_over_the_count() -> None:
    assert verification_state(5, "refuted") == "refuted"
    assert verification_state(1, "verified") == "verified"


def test_compatible_types_merge_with_the_larger_limits() -> None:
    fire = rep("fire")
    smoke = rep("smoke", moved(fire.lon, fire.lat, 100), minutes=10)
    assert together(cluster([fire, smoke], RULES), fire, smoke)
    # 450 m: beyond fire's own 300 m, within smoke's 500 m, which the pair takes.
    far_smoke = rep("smoke", moved(fire.lon, fire.lat, 450), minutes=5)
    far_fire = rep("fire", moved(fire.lon, fire.lat, 450), minutes=5)
    assert together(cluster([fire, far_smoke], RULES), fire, far_smoke)
    assert not together(cluster([fire, far_fire], RULES), fire, far_fire)
    assert RULES.limits("smoke", "fire") == RULES.limits("fire", "smoke")
    assert RULES.limits("fire", "medical") is None


def test_one_automated_source_at_two_places_reports_two_emergencies() -> None:
    sensor = source_key(None, "gas-detectors", "Tenderloin")
    here = rep("fire", source=sensor)
    there = rep("fire", moved(here.lon, here.lat, 200), source=sensor)  # fire links 300 m
    assert not together(cluster([here, there], RULES), here, there)
    # ... unless it says so (refs), or it reports the same place twice (one source, no
    # corroboration), or two people report the two places.
    update = rep("fire", moved(here.lon, here.lat, 200), source=sensor, refs=(here.event_id,))
    assert together(cluster([here, update], RULES), here, update)
    again = rep("fire", moved(here.lon, here.lat, 50), minutes=2, source=sensor)
    assert together(cluster([here, again], RULES), here, again)
    a, b = rep("fire"), rep("fire", moved(here.lon, here.lat, 200))
    assert together(cluster([a, b], RULES), a, b)


def test_a_busy_address_does_not_glue_a_days_calls() -> None:
    # A care home calls an ambulance every 10 minutes for a day: every call links the next
    # (medical: 100 m, 15 min), but an incident reaches no further than its seed's window.
    calls = [rep("medical", moved(-122.4194, 37.7793, 5 * (k % 3)), 10 * k) for k in range(144)]
    found = cluster(calls, RULES)
    assert len(set(neighbourhoods(calls, RULES).values())) == 1
    by_id = {c.event_id: c for c in calls}
    seeds = {seed_id(c): c for c in calls}
    for event_id, incident in found.items():
        apart = by_id[event_id].observed_at - seeds[incident].observed_at
        assert timedelta(0) <= apart <= timedelta(minutes=15)
    assert len(set(found.values())) >= 144 // 2


def test_exercise_and_actual_never_link() -> None:
    a, b = rep("fire"), rep("fire", minutes=1, status="exercise")
    c = rep("fire", minutes=2, status="exercise", refs=(a.event_id,))
    assert partition(cluster([a, b, c], RULES)) == {
        frozenset({a.event_id}),
        frozenset({b.event_id, c.event_id}),
    }


def test_update_via_refs_links_regardless_of_distance_and_time() -> None:
    a = rep("fire")
    update = rep("fire", moved(a.lon, a.lat, 5000), minutes=240, refs=(a.event_id,))
    other = rep("fire", moved(a.lon, a.lat, 5000), minutes=240)
    incidents = cluster([a, update, other], RULES)
    assert together(incidents, a, update)
    # other is linked to the update, but the incident's seed is a, 5 km away: refs are exempt
    # from the extent, what lies near them is not.
    assert not together(incidents, a, other)
    assert could_link(update, other, RULES) and not could_link(a, other, RULES)


def test_a_chain_is_not_an_incident_and_a_cancel_repartitions() -> None:
    west = rep("fire")
    bridge = rep("fire", moved(west.lon, west.lat, east_m=250), minutes=5)
    east = rep("fire", moved(west.lon, west.lat, east_m=500), minutes=10)
    before = cluster([west, bridge, east], RULES)
    # One linked neighbourhood, two incidents: east is 500 m from west, the seed.
    assert len(set(neighbourhoods([west, bridge, east], RULES).values())) == 1
    assert partition(before) == {
        frozenset({west.event_id, bridge.event_id}),
        frozenset({east.event_id}),
    }
    # Cancelling the seed: the neighbourhood is partitioned again, bridge seeds, east joins.
    cancelled = Report(**{**_fields(west), "cancelled": True})
    after = cluster([cancelled, bridge, east], RULES)
    assert west.event_id not in after
    assert together(after, bridge, east)
    assert after[bridge.event_id] == seed_id(bridge)
    assert successors(before, after) == {
        seed_id(west): frozenset({seed_id(bridge)}),
        seed_id(east): frozenset({seed_id(bridge)}),
    }


def test_a_pinned_report_stays_alone() -> None:
    a = rep("fire")
    b = rep("fire", moved(a.lon, a.lat, 250), minutes=5)
    before = cluster([a, b], RULES)
    assert together(before, a, b)

    pinned_a = Report(**{**_fields(a), "pinned": True})
    between = rep("fire", moved(a.lon, a.lat, 125), minutes=3)
    near_update = rep("fire", (a.lon, a.lat), minutes=4, refs=(a.event_id,))
    after = cluster([pinned_a, b, between, near_update], RULES)
    assert partition(after) == {
        frozenset({a.event_id}),
        frozenset({b.event_id, between.event_id, near_update.event_id}),
    }
    # a was the earliest report, yet the split-out report does not take the incident's id.
    assert after[a.event_id] != before[a.event_id] == seed_id(a)
    assert after[a.event_id] == seed_id(pinned_a)
    # An update that fusion pinned (it refs the split-out report) stays with it, right next
    # to the others; the pair keeps the split-out report's id.
    follower = Report(**{**_fields(near_update), "pinned": True})
    after = cluster([pinned_a, b, between, follower], RULES)
    assert partition(after) == {
        frozenset({a.event_id, follower.event_id}),
        frozenset({b.event_id, between.event_id}),
    }
    assert after[follower.event_id] == seed_id(pinned_a)
    assert could_link(pinned_a, follower, RULES) and not could_link(pinned_a, near_update, RULES)


# --- incident ids and incremental clustering --------------------------------------------------


def test_the_incident_is_named_after_its_earliest_report_and_a_late_one_renames_it() -> None:
    late = rep("fire", minutes=10)
    early = rep("fire", moved(late.lon, late.lat, 100), minutes=0)  # made after: a larger id
    first = cluster([late], RULES)
    assert first[late.event_id] == seed_id(late)
    both = cluster([late, early], RULES)
    assert set(both.values()) == {seed_id(early)}  # the older report's seed, not min(uuids)
    assert successors(first, both) == {seed_id(late): frozenset({seed_id(early)})}


def test_a_report_between_two_incidents_joins_one_and_never_glues_them() -> None:
    west = rep("fire", moved(-122.4194, 37.7793, east_m=-200))
    east = rep("fire", moved(-122.4194, 37.7793, east_m=200), minutes=1)
    stored = [west, east]
    prior = cluster(stored, RULES)
    assert len(set(prior.values())) == 2
    new = rep("fire", moved(-122.4194, 37.7793, east_m=-10), minutes=2)  # nearer to west

    result = incrementally([stored, [new]])
    full = cluster([*stored, new], RULES)
    assert result == full
    assert partition(full) == {
        frozenset({west.event_id, new.event_id}),
        frozenset({east.event_id}),
    }


def incrementally(batches: Sequence[Sequence[Report]], rules: Rules = RULES) -> dict[Any, Any]:
    """The incidents as fusion builds them, batch by batch: per batch, the stored reports that
    could link to it (``select_candidates``), every member of their neighbourhoods, and the
    batch, partitioned; every other stored report keeps its incident."""
    stored: dict[uuid.UUID, Report] = {}
    incident: dict[uuid.UUID, uuid.UUID] = {}
    hood: dict[uuid.UUID, uuid.UUID] = {}
    for batch in batches:
        hit = select_candidates(list(stored.values()), batch, rules)
        touched = {hood[c.event_id] for c in hit if c.event_id in hood}
        members = [r for e, r in stored.items() if hood.get(e) in touched]
        incident.update(cluster([*members, *batch], rules))
        hood.update(neighbourhoods([*members, *batch], rules))
        stored.update((r.event_id, r) for r in batch)
    return {e: incident[e] for e, r in stored.items() if not r.cancelled}


def _inside(r: Report, spans: Sequence[dict[str, Any]]) -> bool:
    return any(
        s["status"] == r.status
        and s["event_type"] == r.event_type
        and s["start"] <= r.observed_at <= s["end"]
        and s["west"] <= r.lon <= s["east"]
        and s["south"] <= r.lat <= s["north"]
        for s in spans
    )


def test_candidate_spans_hold_every_report_that_could_link() -> None:
    # Real places: SFPD incidents of the Tenderloin as stored reports of fire, smoke, medical
    # and other; the batch is a fire, a smoke and a medical report among them.
    places = [(i.lon, i.lat) for i in sf_incidents() if i.community == "Tenderloin"][:400]
    kinds = ("fire", "smoke", "medical", "other", "suicide")
    stored = [rep(kinds[k % len(kinds)], at, minutes=(k * 7) % 240) for k, at in enumerate(places)]
    batch = [rep("fire", places[3], 100), rep("smoke", places[50], 130), rep("medical", places[9])]
    spans = candidate_spans(RULES, report_frame(batch)).to_dicts()
    linking = select_candidates(stored, batch, RULES)
    assert linking  # the scenario has candidates to find
    assert all(_inside(r, spans) for r in linking)
    assert {s["event_type"] for s in spans} == {
        "fire",
        "smoke",
        "vehicle_fire",
        "medical",
        "suicide",
    } | {t for t in RULES.partners("fire") | RULES.partners("medical")}
    # a superset, but a tight one: far fewer reports inside than stored
    assert sum(_inside(r, spans) for r in stored) < len(stored) / 2


def test_candidate_spans_are_empty_when_nothing_links_by_proximity() -> None:
    assert candidate_spans(RULES, report_frame([rep("other")])).height == 0
    assert candidate_spans(RULES, report_frame([rep("fire", pinned=True)])).height == 0
    assert candidate_spans(RULES, report_frame([])).height == 0


def test_conflicting_copies_of_one_event_are_refused() -> None:
    a = rep("fire")
    assert cluster([a, a], RULES) == {a.event_id: seed_id(a)}
    with pytest.raises(ValueError, match="two different reports"):
        cluster([a, Report(**{**_fields(a), "severity": "Severe"})], RULES)


def test_a_report_needs_an_aware_time_and_a_picture() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Report(**{**_fields(rep()), "observed_at": datetime(2018, 12, 1)})
    with pytest.raises(ValueError, match="picture"):
        Report(**{**_fields(rep()), "status": "Actual"})


def test_the_sphere_stays_within_the_margin_of_the_ellipsoid() -> None:
    geod = Geod(ellps="WGS84")
    points = [(-122.42, 37.78), (0.0, 0.0), (10.0, 60.0), (100.0, -80.0), (179.99, 0.5)]
    for (lon, lat), (north, east) in itertools.product(points, [(300, 0), (0, 300), (700, 700)]):
        a = rep(at=(lon, lat))
        b = rep(at=moved(lon, lat, north, east))
        ellipsoid = geod.inv(a.lon, a.lat, b.lon, b.lat)[2]
        assert abs(distance_m(a, b) / ellipsoid - 1) < SPHEROID_MARGIN - 1


# --- summaries --------------------------------------------------------------------------------


def test_severity_is_the_highest_credible() -> None:
    rumour = rep(severity="Extreme", certainty="Unlikely")
    seen = rep(severity="Moderate", certainty="Observed")
    assert severity_of([rumour, seen]) == "Moderate"
    assert severity_of([rumour, rep(severity="Minor", certainty="Unknown")]) == "Extreme"
    assert severity_of([]) == "Unknown"


def test_summary() -> None:
    smoke = rep("smoke", minutes=0, severity="Minor", certainty="Possible", community="B")
    fire = rep("fire", minutes=5, severity="Severe", certainty="Likely", community="A")
    later = rep("fire", minutes=9, severity="Moderate", certainty="Observed", community=None)
    gone = rep("smoke", minutes=12, severity="Extreme", certainty="Observed", cancelled=True)
    summary = IncidentSummary.build(uuid.UUID(int=1), [later, gone, fire, smoke], "refuted")
    assert summary.event_type == "fire"
    assert (summary.severity, summary.certainty) == ("Severe", "Observed")
    assert summary.first_observed_at == smoke.observed_at
    assert summary.last_observed_at == later.observed_at
    assert summary.communities == ("A", "B")
    assert summary.members == (smoke.event_id, fire.event_id, later.event_id)
    assert summary.points[0] == (smoke.lon, smoke.lat)
    assert summary.verification == "refuted"
    # A tie in counts goes to the type of the most severe report, then to the name.
    tie = [rep("smoke", severity="Minor"), rep("fire", severity="Severe")]
    assert IncidentSummary.build(uuid.UUID(int=2), tie).event_type == "fire"
    tie = [rep("smoke", severity="Minor"), rep("fire", severity="Minor")]
    assert IncidentSummary.build(uuid.UUID(int=3), tie).event_type == "fire"
    with pytest.raises(ValueError, match="no live report"):
        IncidentSummary.build(uuid.UUID(int=4), [gone])


# --- properties -------------------------------------------------------------------------------


@cache
def _bases() -> tuple[Incident, ...]:
    """Real places to scatter reports around: SFPD incidents of one dense neighbourhood."""
    return tuple(i for i in sf_incidents() if i.community == "Tenderloin")[:25]


TYPES = ("fire", "smoke", "vehicle_fire", "medical", "traffic_collision", "other", "assault")


@st.composite
def report_sets(draw: st.DrawFn, max_size: int = 40) -> list[Report]:
    n = draw(st.integers(1, max_size))
    ids = draw(st.lists(st.integers(1, 2**64), min_size=n, max_size=n, unique=True))
    bases = _bases()
    out: list[Report] = []
    for raw_id in ids:
        base = bases[draw(st.integers(0, len(bases) - 1))]
        at = moved(base.lon, base.lat, draw(st.floats(-300, 300)), draw(st.floats(-300, 300)))
        refs: tuple[uuid.UUID, ...] = ()
        if out and draw(st.integers(0, 9)) == 0:
            refs = (out[draw(st.integers(0, len(out) - 1))].event_id,)
        out.append(
            Report(
                event_id=uuid.UUID(int=raw_id),
                event_type=draw(st.sampled_from(TYPES)),
                status=draw(st.sampled_from(("actual", "actual", "actual", "exercise"))),
                observed_at=T0 + timedelta(seconds=draw(st.integers(0, 5400))),
                lon=at[0],
                lat=at[1],
                community_id=base.community,
                source_key=f"s:{draw(st.integers(0, 3))}",
                pinned=draw(st.integers(0, 9)) == 0,
                cancelled=draw(st.integers(0, 9)) == 0,
                refs=refs,
            )
        )
    return out


@settings(max_examples=80, deadline=None)
@given(report_sets(max_size=25), st.lists(st.integers(0, 24), max_size=30), st.randoms())
def test_exact_repeats_are_partitioned_once_with_the_same_result(
    reports: list[Report], repeated: list[int], rng: Any
) -> None:
    """Repeats of a report (same place, instant, type, source and picture; new ids, some
    pinned, cancelled or with refs of their own) give the same incidents and neighbourhoods
    whether twins are collapsed or every row takes part."""
    copies = []
    for k, n in enumerate(repeated):
        original = reports[n % len(reports)]
        copies.append(
            dataclasses.replace(
                original,
                event_id=uuid.UUID(int=2**65 + k),
                refs=() if rng.random() < 0.8 else original.refs,
                pinned=original.pinned and rng.random() < 0.5,
                cancelled=rng.random() < 0.1,
            )
        )
    everything = reports + copies
    rng.shuffle(everything)
    frame = report_frame(everything)
    collapsed = correlate_frame(frame, RULES)
    assert collapsed.equals(correlate_frame(frame, RULES, twins=False))


@settings(max_examples=60, deadline=None)
@given(report_sets(max_size=30), st.randoms())
def test_seeds_carried_by_some_rows_change_nothing(reports: list[Report], rng: Any) -> None:
    """Rows fusion partitioned before carry their seed (its neighbourhood cache); the others
    are hashed: the incidents, neighbourhoods and seeds are those of a frame without any."""
    frame = report_frame(reports)
    fresh = correlate_frame(frame, RULES)
    carried = pl.Series([rng.random() < 0.5 for _ in range(frame.height)], dtype=pl.Boolean)
    partly = frame.with_columns(pl.when(carried).then(fresh["seed"]).alias("seed"))
    assert correlate_frame(partly, RULES).equals(fresh)


def _oracle_hoods(reports: Sequence[Report], rules: Rules) -> dict[uuid.UUID, frozenset[Any]]:
    """The linked neighbourhoods by comparing every pair."""
    live = [r for r in reports if not r.cancelled]
    component = {r.event_id: frozenset({r.event_id}) for r in live}
    for a, b in itertools.combinations(live, 2):
        if could_link(a, b, rules) and component[a.event_id] is not component[b.event_id]:
            merged = component[a.event_id] | component[b.event_id]
            for e in merged:
                component[e] = merged
    return component


def _oracle(reports: Sequence[Report], rules: Rules) -> dict[uuid.UUID, uuid.UUID]:
    """The model on Report objects, one report at a time (``partition``'s docstring): refs
    groups; in seed order each group's earliest report joins the incident of the best-scoring
    earlier linked report whose seed has it inside the extent ellipse and whose automated
    sources agree on the place, else seeds one."""
    live = [r for r in reports if not r.cancelled]
    by_id = {r.event_id: r for r in live}
    group = {e: {e} for e in by_id}
    for a, b in itertools.combinations(live, 2):
        linked_by_refs = b.event_id in a.refs or a.event_id in b.refs
        if linked_by_refs and a.pinned == b.pinned and a.status == b.status:
            merged = group[a.event_id] | group[b.event_id]
            for e in merged:
                group[e] = merged
    seed = {e: seed_id(r) for e, r in by_id.items()}
    order = sorted(by_id, key=lambda e: str(seed[e]))
    rank = {e: k for k, e in enumerate(order)}
    out: dict[uuid.UUID, uuid.UUID] = {}
    first: dict[uuid.UUID, Report] = {}  # incident -> its seed report
    for e in order:
        if e in out:
            continue
        r = by_id[e]
        members = [by_id[m] for m in sorted(group[e], key=rank.__getitem__)]
        best = None
        if not r.pinned:
            scored = sorted(
                (_score(r, by_id[o], rules), rank[o], out[o])
                for o in out
                if rank[o] < rank[e] and _proximity(r, by_id[o], rules)
            )
            for _, _, inc in scored:
                if _in_extent(r, first[inc], rules) and _agree(members, inc, out, by_id, rules):
                    best = inc
                    break
        if best is None:
            best = seed[e]
            first[best] = r
        for m in members:
            out[m.event_id] = best
    return out


def _proximity(a: Report, b: Report, rules: Rules) -> bool:
    """A link by place and time (not by refs)."""
    return could_link(dataclasses.replace(a, refs=()), dataclasses.replace(b, refs=()), rules)


def _pair(a: Report, b: Report, rules: Rules) -> tuple[float, float, float, float]:
    """(metres apart, seconds apart, the pair's distance, its window); the pair must link."""
    reach = rules.limits(a.event_type, b.event_type)
    assert reach is not None
    dt = abs(a.observed_at.timestamp() - b.observed_at.timestamp())
    return distance_m(a, b), dt, reach.distance_m, reach.window.total_seconds()


def _score(a: Report, b: Report, rules: Rules) -> float:
    d, dt, distance, window = _pair(a, b, rules)
    return (d / distance) ** 2 + (dt / window) ** 2


def _in_extent(r: Report, seed: Report, rules: Rules) -> bool:
    if rules.limits(r.event_type, seed.event_type) is None or not _proximity(r, seed, rules):
        return False
    return _score(r, seed, rules) <= 1.0


def _agree(
    members: Sequence[Report],
    incident: uuid.UUID,
    out: Mapping[uuid.UUID, uuid.UUID],
    by_id: Mapping[uuid.UUID, Report],
    rules: Rules,
) -> bool:
    """No automated source of ``members`` reported ``incident`` at another place."""
    for m in members:
        if not m.source_key.startswith(("s:", "k:")):
            continue
        for e, inc in out.items():
            other = by_id[e]
            same = inc == incident and other.source_key == m.source_key
            if same and distance_m(m, other) > rules.same_place_m:
                return False
    return True


WIDE = Rules.parse(
    {
        "defaults": {"distance_m": 20_000, "window": 600, "correlate": True},
        "types": {"near": {"distance_m": 500, "window": 30}, "far": {"distance_m": 50_000}},
        "compatible": {"pairs": [["near", "far"]]},
    },
    "wide",
)


@st.composite
def world_reports(draw: st.DrawFn) -> list[Report]:
    """Reports around the poles, the antimeridian and SF: the grid's awkward places."""
    n = draw(st.integers(1, 30))
    anchors = [(-179.99, 0.0), (179.99, 0.1), (0.0, 89.99), (120.0, -89.95), (-122.42, 37.78)]
    out = []
    for k in range(n):
        lon0, lat0 = draw(st.sampled_from(anchors))
        lon = lon0 + draw(st.floats(-0.3, 0.3))
        lon = lon - 360 if lon > 180 else lon + 360 if lon < -180 else lon
        lat = max(-90.0, min(90.0, lat0 + draw(st.floats(-0.3, 0.3))))
        out.append(
            rep(
                draw(st.sampled_from(("near", "far", "misc"))),
                (lon, lat),
                draw(st.floats(0, 1200)),
                event_id=uuid.UUID(int=k + 1),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(world_reports())
def test_the_grid_misses_no_link_anywhere_on_earth(reports: list[Report]) -> None:
    hoods = neighbourhoods(reports, WIDE)
    assert partition(hoods) == {frozenset(m) for m in _oracle_hoods(reports, WIDE).values()}
    assert cluster(reports, WIDE) == _oracle(reports, WIDE)


# --- the rules file ---------------------------------------------------------------------------


def test_the_shipped_rules() -> None:
    assert Rules.load(SHIPPED) == RULES
    assert RULES.rule("fire").distance_m == 300 and RULES.rule("fire").window.seconds == 1800
    assert RULES.rule("flood").distance_m == 1000
    assert RULES.rule("flood").window == timedelta(hours=6)
    assert RULES.rule("larceny_theft") == RULES.default
    assert (RULES.default.distance_m, RULES.default.window) == (275, timedelta(minutes=20))
    assert (RULES.same_place_m, RULES.corroborate_within) == (150, 0.5)
    assert not RULES.rule("other").correlate and RULES.partners("other") == frozenset()
    for pair in (("smoke", "fire"), ("traffic_collision", "medical"), ("water_level", "flood")):
        assert RULES.compatible_types(*pair) and RULES.compatible_types(*reversed(pair))


@pytest.mark.parametrize(
    ("sources", "key", "problem"),
    [
        ("same_place_m = 0", "sources.same_place_m", "> 0"),
        ("corroborate_within = 1.5", "sources.corroborate_within", "at most 1"),
        ("same_place = 10", "sources.same_place", "unknown key"),
    ],
)
def test_the_sources_table_is_checked(tmp_path: Path, sources: str, key: str, problem: str) -> None:
    path = _write(tmp_path, DEFAULTS + "[sources]\n" + sources + "\n")
    with pytest.raises(RulesError, match=f"{key}: .*{problem}"):
        Rules.load(path)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


DEFAULTS = "[defaults]\ndistance_m = 250\nwindow = 20\ncorrelate = true\n"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("colour = 1\n" + DEFAULTS, "colour", "unknown key"),
        (DEFAULTS + "colour = 1\n", "defaults.colour", "unknown key"),
        (DEFAULTS + "[types.fire]\nradius = 3\n", "types.fire.radius", "unknown key"),
        (DEFAULTS + "[types.fire]\ndistance_m = -3\n", "types.fire.distance_m", "> 0"),
        (DEFAULTS + "[types.fire]\nwindow = 0\n", "types.fire.window", "> 0"),
        (DEFAULTS + "[types.fire]\nwindow = true\n", "types.fire.window", "number"),
        (DEFAULTS + "[types.fire]\nwindow = '30'\n", "types.fire.window", "number"),
        (DEFAULTS + "[types.fire]\ndistance_m = 1e9\n", "types.fire.distance_m", "at most"),
        (DEFAULTS + "[types.fire]\ncorrelate = 'no'\n", "types.fire.correlate", "true or false"),
        (DEFAULTS + "[types.Fire]\n", "types.Fire", "not an event type"),
        ("types = 3\n" + DEFAULTS, "types", "table"),
        ("[defaults]\ndistance_m = 250\ncorrelate = true\n", "defaults.window", "missing"),
        (DEFAULTS + "[compatible]\npairs = [['a']]\n", "compatible.pairs[0]", "pair"),
        (DEFAULTS + "[compatible]\npairs = [['a', 'a']]\n", "compatible.pairs[0]", "always"),
        (
            DEFAULTS + "[compatible]\npairs = [['a','b'],['b','a']]\n",
            "compatible.pairs[1]",
            "repeats",
        ),
        (DEFAULTS + "[compatible]\nlist = []\n", "compatible.list", "unknown key"),
        (
            DEFAULTS
            + "[types.other]\ncorrelate = false\n[compatible]\npairs = [['other','fire']]\n",
            "compatible.pairs[0]",
            "correlate = false",
        ),
    ],
)
def test_rules_errors_name_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        Rules.load(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)


def test_rules_file_problems(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not valid TOML"):
        Rules.load(_write(tmp_path, "[defaults\n"))
    with pytest.raises(RulesError, match="cannot read"):
        Rules.load(tmp_path / "missing.toml")


def test_a_pair_may_name_a_type_without_an_entry(tmp_path: Path) -> None:
    rules = Rules.load(
        _write(tmp_path, DEFAULTS + "[compatible]\npairs = [['landslide', 'flood']]\n")
    )
    assert rules.limits("flood", "landslide") == (250, timedelta(minutes=20))
    assert rules.partners("flood") == {"flood", "landslide"}


# --- the columnar arms agree with the model ---------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.lists(st.uuids(), min_size=1, max_size=20), st.lists(st.booleans(), min_size=20),
       st.integers(0, (1 << 48) - 1))  # fmt: skip
def test_seed_texts_lay_out_the_uuid5_bits(ids: list[uuid.UUID], pins: list[bool], ms: int) -> None:
    """The bulk layout equals the documented one, written from uuid5 without shortcuts."""
    pinned = pins[: len(ids)]
    got = seed_texts([str(i) for i in ids], pinned, np.full(len(ids), ms, dtype=np.int64))
    for event_id, pin, text in zip(ids, pinned, got, strict=True):
        u = uuid.uuid5(NAMESPACE, f"pinned:{event_id}" if pin else str(event_id)).int
        want = (ms << 80) | (0x8 << 76) | (u & (0xFFF << 64)) | (0b10 << 62) | (u & ((1 << 62) - 1))
        assert text == str(uuid.UUID(int=want))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=1, max_size=12))
def test_escaping_in_bulk_equals_esc(values: list[str | None]) -> None:
    got = escaped(pl.Series(values, dtype=pl.String)).to_list()
    assert got == [None if v is None else esc(v) for v in values]


def test_source_keys_in_bulk_equal_source_key() -> None:
    rows = pl.DataFrame(
        {
            "reporter": ["hmac-sha256:ab", None, "x y", None, "%41"],
            "source_system": ["grid.a", "sensor/1", "app", "sf-311 hotline", "a:b"],
            "community_id": ["Western Addition", None, None, "Mission", "Castro/Upper Market"],
        }
    )
    want = [source_key(*row) for row in rows.iter_rows()]
    assert source_keys(rows).to_list() == want


def test_point_wkb_in_bulk_equals_shapely() -> None:
    lon, lat = pl.Series([-122.4194, 0.0, 179.9999999]), pl.Series([37.7793, -0.0, -89.5])
    want = shapely.to_wkb(shapely.points(lon.to_numpy(), lat.to_numpy()), hex=True)
    assert point_wkb(lon, lat) == [w.lower() for w in want]
