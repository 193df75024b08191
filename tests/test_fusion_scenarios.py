"""The harder variants of ``hub bench fusion``, as constructed from the real data: denser
months, hotspots, a collision beside an unrelated medical call, floods, an offset source and
the SFFD storm. Each is deterministic per seed, puts everything at real places, and has the
property it is named after. Pure (no broker, no database), on a few thousand incidents."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from pyproj import Geod

from hub.bench.fusion_quality import (
    SFFD_CSV,
    VARIANTS,
    GeneratedReport,
    GeneratorParams,
    TrueIncident,
    fold_days,
    generate,
    hotspot_places,
    select,
    sffd_incidents,
    storm,
    true_incidents,
    variant_names,
    variant_reports,
    with_floods,
    with_hotspots,
    with_mixed_types,
)
from hub.bench.fusion_quality.scenarios import FLOOD_RADIUS_M, MIXED_GAP_S
from hub.bench.fusion_quality.truth import ZONE
from hub.fusion.rules import Rules

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def incidents() -> tuple[TrueIncident, ...]:
    return true_incidents()[:3000]


def real_places() -> set[tuple[float, float]]:
    return {(i.lon, i.lat) for i in true_incidents()}


def distances_m(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> np.ndarray:
    _, _, d = GEOD.inv([p[0] for p in a], [p[1] for p in a], [p[0] for p in b], [p[1] for p in b])
    return np.asarray(d)


# --- the variants -----------------------------------------------------------------------------


def test_every_variant_is_named_and_selectable() -> None:
    assert variant_names() == [
        "default",
        "noise x2",
        "density x2",
        "density x4",
        "density x8",
        "density x16",
        "hotspots",
        "mixed types",
        "floods",
        "offset source",
        "sffd storm",
    ]
    assert select(None) == select([]) == select(["all"]) == VARIANTS
    assert [n for n, _ in select(["floods", "default"])] == ["default", "floods"]  # table order
    with pytest.raises(ValueError, match="density x3"):
        select(["density x3"])


@pytest.mark.parametrize("name", [n for n, _ in VARIANTS])
def test_every_variant_is_deterministic_and_has_ids_of_its_own(name: str) -> None:
    params = replace(GeneratorParams(), **dict(VARIANTS)[name])
    first = variant_reports(params, 150)
    assert variant_reports(params, 150) == first
    assert len({r.report_id for r in first}) == len(first)
    if name != "default":
        default_ids = {r.report_id for r in variant_reports(GeneratorParams(), 150)}
        assert default_ids.isdisjoint(r.report_id for r in first)
    other_seed = variant_reports(replace(params, seed=8), 150)
    assert [r.lon for r in other_seed] != [r.lon for r in first]


def test_density_x8_and_x16_fold_the_month_onto_4_and_2_days() -> None:
    everything = true_incidents()
    days = {i.observed_at.date() for i in everything}
    assert len(days) == 31
    for density, expected in ((8, 4), (16, 2)):
        folded = fold_days(everything, density)
        assert len({i.observed_at.date() for i in folded}) == expected == math.ceil(31 / density)
        assert [i.observed_at.time() for i in folded] == [i.observed_at.time() for i in everything]


# --- hotspots ---------------------------------------------------------------------------------


def test_hotspots_are_the_busiest_real_places() -> None:
    everything = true_incidents()
    places = hotspot_places(everything, 10)
    tally = Counter((i.lon, i.lat) for i in everything)
    counts = [tally[(p.lon, p.lat)] for p in places]
    assert counts == sorted(counts, reverse=True) and counts[0] == max(tally.values())
    assert counts[-1] >= sorted(tally.values(), reverse=True)[9]
    assert len({(p.lon, p.lat) for p in places}) == 10
    assert {(p.lon, p.lat) for p in places} <= real_places()


def test_hotspots_move_a_share_onto_the_days_hotspot(incidents: tuple[TrueIncident, ...]) -> None:
    moved = with_hotspots(incidents, 10, 0.12, seed=7)
    assert moved == with_hotspots(incidents, 10, 0.12, seed=7)
    assert moved != with_hotspots(incidents, 10, 0.12, seed=8)
    spots = {(p.lon, p.lat): p.community for p in hotspot_places(incidents, 10)}
    changed = [(a, b) for a, b in zip(incidents, moved, strict=True) if a != b]
    assert len(changed) == round(0.12 * len(incidents))
    spot_of_day: dict[object, set[tuple[float, float]]] = defaultdict(set)
    for before, after in changed:
        assert (before.lon, before.lat) not in spots  # nothing "moved" onto where it was
        assert spots[(after.lon, after.lat)] == after.community  # the hotspot's community
        # Its own time, type and everything else.
        assert replace(after, lon=before.lon, lat=before.lat, community=before.community) == before
        spot_of_day[after.observed_at.astimezone(ZONE).date()].add((after.lon, after.lat))
    assert all(len(s) == 1 for s in spot_of_day.values())  # one hotspot per day


def test_hotspots_bring_many_distinct_incidents_to_one_place_in_a_day(
    incidents: tuple[TrueIncident, ...],
) -> None:
    def busiest(incs: Sequence[TrueIncident]) -> tuple[int, int]:
        """(most incidents at one place in a day, pairs at one place <= 20 min apart)."""
        per_day = Counter(((i.lon, i.lat), i.observed_at.date()) for i in incs)
        times: dict[tuple[float, float], list[float]] = defaultdict(list)
        for i in incs:
            times[(i.lon, i.lat)].append(i.observed_at.timestamp())
        close = sum(int(np.sum(np.diff(sorted(t)) <= 1200)) for t in times.values())
        return max(per_day.values()), close

    plain, hot = busiest(incidents), busiest(with_hotspots(incidents, 10, 0.12, seed=7))
    assert plain[0] < 15 and hot[0] >= 30
    assert hot[1] > plain[1] + 100


# --- a collision beside an unrelated medical call ----------------------------------------------


def test_mixed_types_pair_a_collision_with_a_medical_call(
    incidents: tuple[TrueIncident, ...],
) -> None:
    mixed = with_mixed_types(incidents, 0.1, seed=7)
    assert mixed == with_mixed_types(incidents, 0.1, seed=7)
    n = round(0.1 * len(incidents))
    assert len(mixed) == len(incidents) + n
    collisions = {i.incident_id: i for i in mixed if i.report_types}  # the real ones have none
    calls = mixed[len(incidents) :]
    assert len(collisions) == len(calls) == n
    originals = {i.incident_id: i for i in incidents}
    for call in calls:
        crash = collisions[call.incident_id.removesuffix("/medical")]
        assert call.event_type == "medical" and dict(call.fields)["category"] == "Health"
        assert crash.event_type == "traffic_collision"
        assert crash.report_types == ("traffic_collision", "medical")
        assert dict(crash.fields)["category"] == "Transport"
        assert (call.lon, call.lat, call.community) == (crash.lon, crash.lat, crash.community)
        gap = (call.observed_at - crash.observed_at).total_seconds()
        assert MIXED_GAP_S[0] <= gap <= MIXED_GAP_S[1]
        # The collision is the real incident, its time and place kept.
        real = originals[crash.incident_id]
        assert (crash.observed_at, crash.lon, crash.lat) == (real.observed_at, real.lon, real.lat)
    untouched = [i for i in mixed[: len(incidents)] if i.incident_id not in collisions]
    assert untouched == [i for i in incidents if i.incident_id not in collisions]
    # The pair the scenario exercises is in the hub's table of compatible types.
    assert Rules.load().compatible_types("traffic_collision", "medical")


def test_mixed_types_reports_say_either_type(incidents: tuple[TrueIncident, ...]) -> None:
    params = GeneratorParams(mixed_share=0.1, confusion=0.0)
    reports = generate(incidents[:1500], params)
    crash = [r for r in reports if r.true_event_type == "traffic_collision"]
    said = Counter(r.event_type for r in crash)
    assert set(said) == {"traffic_collision", "medical"}
    assert said["medical"] / len(crash) == pytest.approx(0.5, abs=0.08)
    calls = [r for r in reports if r.incident_id.endswith("/medical")]
    assert calls and all(r.event_type == r.true_event_type == "medical" for r in calls)


# --- floods -----------------------------------------------------------------------------------


def test_floods_are_added_at_real_places_and_times(incidents: tuple[TrueIncident, ...]) -> None:
    flooded = with_floods(incidents, 6, seed=7)
    assert flooded[: len(incidents)] == list(incidents) and len(flooded) == len(incidents) + 6
    real = {(i.lon, i.lat, i.observed_at) for i in incidents}
    for flood in flooded[len(incidents) :]:
        assert (flood.lon, flood.lat, flood.observed_at) in real
        assert flood.event_type == "flood" and flood.extent_m == FLOOD_RADIUS_M
        assert 20 <= flood.sources <= 40 and 3 * 3600 <= flood.duration_s <= 5 * 3600


def test_flood_reports_spread_over_an_area_and_hours(incidents: tuple[TrueIncident, ...]) -> None:
    reports = generate(incidents[:1000], GeneratorParams(floods=6, sigma_m=0.0))
    floods = {i.incident_id: i for i in with_floods(incidents[:1000], 6, seed=7)[1000:]}
    by_flood: dict[str, list[GeneratedReport]] = defaultdict(list)
    for r in reports:
        if r.incident_id in floods:
            by_flood[r.incident_id].append(r)
    assert set(by_flood) == set(floods)
    for name, rs in by_flood.items():
        flood = floods[name]
        assert len(rs) == flood.sources  # "many sources": its own count, not 1-4
        assert len({r.source_key for r in rs}) >= 10
        centre = [(flood.lon, flood.lat)] * len(rs)
        off = distances_m(centre, [(r.lon, r.lat) for r in rs])
        assert off.max() <= FLOOD_RADIUS_M + 0.5 and off.max() > 0.6 * FLOOD_RADIUS_M
        assert np.allclose(off, [r.displacement_m for r in rs], atol=0.05)
        start = flood.observed_at.timestamp()
        times = np.array([r.observed_s for r in rs])
        assert times.min() >= start and times.max() <= start + flood.duration_s
        assert times.max() - times.min() > 3600  # over hours, not minutes


# --- an offset source -------------------------------------------------------------------------


def test_offset_source_moves_one_systems_reports_per_incident(
    incidents: tuple[TrueIncident, ...],
) -> None:
    exact = GeneratorParams(sigma_m=0.0)
    plain = generate(incidents[:1500], exact)
    shifted = generate(incidents[:1500], replace(exact, offset_source="sf-311-hotline"))
    assert len(plain) == len(shifted)
    hotline = 0
    vectors: dict[str, set[tuple[float, float]]] = defaultdict(set)
    truth = {i.incident_id: i for i in incidents}
    for a, b in zip(plain, shifted, strict=True):
        assert (a.incident_id, a.source_key, a.observed_s) == (
            b.incident_id,
            b.source_key,
            b.observed_s,
        )
        if b.source_key != "sf-311-hotline":
            assert (a.lon, a.lat) == (b.lon, b.lat)
            continue
        hotline += 1
        assert 80 - 0.05 <= b.displacement_m <= 150 + 0.05
        true = truth[b.incident_id]
        vectors[b.incident_id].add((round(b.lon - true.lon, 6), round(b.lat - true.lat, 6)))
    assert hotline > 100
    assert all(len(v) == 1 for v in vectors.values())  # one displacement per incident
    assert len({v for vs in vectors.values() for v in vs}) > 0.9 * len(vectors)
    with pytest.raises(ValueError, match="offset_source"):
        generate(incidents[:10], replace(exact, offset_source="no-such-system"))


# --- the SFFD storm ---------------------------------------------------------------------------


def test_sffd_incidents_are_the_fire_calls() -> None:
    calls = sffd_incidents()
    with SFFD_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    timed = {r["IncidentNumber"] for r in rows if r["AvailableDtTm"] != "null"}
    assert {i.incident_id for i in calls} == timed and len(calls) == 949
    places = {r["Location"] for r in rows}
    assert all(f"({i.lat}, {i.lon})" in places for i in calls[:200])
    types = Counter(i.event_type for i in calls)
    assert types.most_common(2) == [("medical", 611), ("fire", 184)]
    assert all(i.community for i in calls)


def test_storm_packs_every_day_into_hours_in_daily_order() -> None:
    calls = sffd_incidents()
    packed = storm(calls, 6.0)
    start = min(i.observed_at for i in packed)
    assert len({i.observed_at.date() for i in packed}) == 1
    assert max(i.observed_at for i in packed) - start < timedelta(hours=6)
    for before, after in zip(calls, packed, strict=True):
        local = before.observed_at.astimezone(ZONE)
        of_day = local.hour * 3600 + local.minute * 60 + local.second
        midnight = after.observed_at.replace(hour=0, minute=0, second=0)
        assert (after.observed_at - midnight).total_seconds() == round(of_day / 4)
        assert (after.lon, after.lat, after.event_type) == (
            before.lon,
            before.lat,
            before.event_type,
        )
    with pytest.raises(ValueError):
        storm(calls, 0)


def test_sffd_storm_variant_reports_the_calls() -> None:
    params = replace(GeneratorParams(), **dict(VARIANTS)["sffd storm"])
    reports = variant_reports(params, 300)
    calls = {i.incident_id for i in sffd_incidents()[:300]}
    assert {r.incident_id for r in reports} == calls
    assert set(Counter(Counter(r.incident_id for r in reports).values())) == {1, 2, 3, 4}
    span = max(r.observed_s for r in reports) - min(r.observed_s for r in reports)
    assert span < 6 * 3600
    assert Counter(r.true_event_type for r in reports).most_common(1)[0][0] == "medical"
