"""The quality harness of ``hub bench fusion``: the true incidents and the report generator, as
the default variant uses them, and the figures over them. Pure (no broker, no database); runs
on the first 2,000 real incidents. The scenarios: ``test_fusion_scenarios``; B-cubed, the naive
baseline and the other figures on hand-made cases: ``test_fusion_scoring``."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import numpy as np
import orjson
import pytest
import shapely
from jsonschema import Draft202012Validator
from pyproj import Geod, Transformer

from connectors import convert_rows, load_mapping
from hub.bench.fusion_quality import (
    RELATED_TYPES,
    SFPD_MAPPING,
    SYSTEMS,
    GeneratedReport,
    GeneratorParams,
    TrueIncident,
    community_system,
    evaluate,
    fold_days,
    generate,
    metres_to_degrees,
    naive_baseline,
    related_types,
    select,
    sf_world,
    sweep,
    true_incidents,
)
from hub.bench.workload import SFPD_CSV
from schemas.event import load_event_schema, parse_event

GEOD = Geod(ellps="WGS84")
N_INCIDENTS = 2000


@pytest.fixture(scope="module")
def incidents() -> tuple[TrueIncident, ...]:
    return true_incidents()[:N_INCIDENTS]


@pytest.fixture(scope="module")
def reports(incidents: tuple[TrueIncident, ...]) -> list[GeneratedReport]:
    return generate(incidents)


def by_id(incidents: Sequence[TrueIncident]) -> dict[str, TrueIncident]:
    return {i.incident_id: i for i in incidents}


def oracle(reports: Sequence[GeneratedReport]) -> dict[str, str]:
    return {r.report_id: r.incident_id for r in reports}


# --- the true incidents ---------------------------------------------------------------------


def test_one_true_incident_per_incident_id() -> None:
    everything = true_incidents()
    assert len({i.incident_id for i in everything}) == len(everything) == 9148
    assert len({i.row_id for i in everything}) == len(everything)


def test_event_fields_are_mapped_as_the_connector_maps_them(
    incidents: tuple[TrueIncident, ...],
) -> None:
    """Category, event_type, the other CAP words and the time: the connector's own output."""
    wanted = {i.row_id for i in incidents}
    with SFPD_CSV.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["Row ID"] in wanted]
    conv = convert_rows(rows, load_mapping(SFPD_MAPPING))
    events = {e.properties["row_id"]: e for e in conv.events}
    assert len(events) == len(incidents)
    for inc in incidents:
        e = events[inc.row_id]
        assert e.event_type == inc.event_type
        assert dict(inc.fields) == {
            "category": e.category,
            "severity": e.severity,
            "urgency": e.urgency,
            "certainty": e.certainty,
            "status": e.status,
        }
        assert e.observed_at == inc.observed_at
        assert e.properties["incident_id"] == inc.incident_id


# --- the generator --------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed(
    incidents: tuple[TrueIncident, ...], reports: list[GeneratedReport]
) -> None:
    again = generate(incidents)
    assert again == reports
    other = generate(incidents, GeneratorParams(seed=8))
    assert {r.report_id for r in other}.isdisjoint({r.report_id for r in reports})
    assert [r.lon for r in other[:50]] != [r.lon for r in reports[:50]]
    # Variants of one seed get ids of their own (a run per variant against one database).
    noisy = generate(incidents[:100], GeneratorParams(noise=2.0))
    assert {r.report_id for r in noisy}.isdisjoint({r.report_id for r in reports})


def test_every_event_is_a_valid_contract_event(reports: list[GeneratedReport]) -> None:
    validator = Draft202012Validator(
        load_event_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    systems = {s for s, _ in SYSTEMS}
    for r in reports:
        doc = orjson.loads(r.event)
        validator.validate(doc)
        e = parse_event(r.event)
        assert str(e.event_id) == r.report_id
        assert e.kind == "incident" and e.category == "Security"
        assert e.event_type == r.event_type and e.community_id == r.community_id
        assert doc["geometry"]["coordinates"] == [r.lon, r.lat]
        assert e.observed_at.timestamp() == r.observed_s
        assert doc["observed_at"].endswith("-08:00")  # local time, as the SFPD connector sends
        if e.source.reporter is None:
            assert e.source.system in systems and r.source_key == e.source.system
        else:
            assert r.source_key == f"{e.source.system}/{e.source.reporter}"
    assert len({r.report_id for r in reports}) == len(reports)


def test_one_to_four_sources_per_incident(
    incidents: tuple[TrueIncident, ...], reports: list[GeneratedReport]
) -> None:
    per_incident = Counter(r.incident_id for r in reports)
    assert set(per_incident) == {i.incident_id for i in incidents}  # every incident reported
    sizes = Counter(per_incident.values())
    assert set(sizes) == {1, 2, 3, 4}
    weights = GeneratorParams().sources_weights
    for k, w in enumerate(weights, start=1):
        assert sizes[k] / len(incidents) == pytest.approx(w, abs=0.04)


def test_sources_come_from_the_community_its_neighbours_or_systems(
    incidents: tuple[TrueIncident, ...], reports: list[GeneratedReport]
) -> None:
    world, truth = sf_world(), by_id(incidents)
    community_of_system = {community_system(c): c for c in world.neighbours}
    kinds: Counter[str] = Counter()
    for r in reports:
        system = orjson.loads(r.event)["source"]["system"]
        if not system.startswith("grid."):
            kinds["system"] += 1
            continue
        home = truth[r.incident_id].community
        community = community_of_system[system]
        assert community == home or community in world.neighbours[home]
        kinds["own" if community == home else "neighbour"] += 1
    n = len(reports)
    assert kinds["system"] / n == pytest.approx(0.2, abs=0.03)
    assert kinds["neighbour"] / (n - kinds["system"]) == pytest.approx(0.3, abs=0.03)


def test_neighbours_are_the_polygons_within_2_km() -> None:
    """Checked against distances in another metric CRS (UTM 10N) than the module's."""
    world = sf_world()
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    utm = shapely.transform(
        world.index.polygons, lambda xy: np.column_stack(to_utm.transform(*xy.T))
    )
    ids = world.index.ids
    for i, community in enumerate(ids):
        distance = shapely.distance(utm[i], utm)
        expected = {ids[j] for j in np.flatnonzero(distance <= 2000) if j != i}
        assert set(world.neighbours[community]) == expected
    assert "Bernal Heights" in world.neighbours["Mission"]
    assert "Presidio" not in world.neighbours["Bayview Hunters Point"]


def test_gps_noise_has_the_rayleigh_mean(
    incidents: tuple[TrueIncident, ...], reports: list[GeneratedReport]
) -> None:
    """Isotropic normal noise of sigma per axis: distance ~ Rayleigh, mean sigma*sqrt(pi/2).
    Measured on the ellipsoid (pyproj.Geod), independently of the generator's conversion."""
    truth = by_id(incidents)

    def mean_distance(rs: list[GeneratedReport]) -> float:
        true = [truth[r.incident_id] for r in rs]
        _, _, dist = GEOD.inv([t.lon for t in true], [t.lat for t in true],
                              [r.lon for r in rs], [r.lat for r in rs])  # fmt: skip
        measured = np.asarray(dist)
        drawn = np.array([r.displacement_m for r in rs])
        assert np.allclose(measured, drawn, atol=0.02, rtol=1e-3)  # metres -> degrees is right
        return float(measured.mean())

    expected = 50 * math.sqrt(math.pi / 2)
    assert mean_distance(reports) == pytest.approx(expected, rel=0.04)
    doubled = generate(incidents[:1000], GeneratorParams(noise=2.0))
    assert mean_distance(doubled) == pytest.approx(2 * expected, rel=0.06)


def test_metres_to_degrees_at_the_latitude() -> None:
    dlon, dlat = metres_to_degrees(np.array([1000.0]), np.array([1000.0]), np.array([37.75]))
    lon, lat, _ = GEOD.fwd(-122.4, 37.75, 90, 1000)
    assert float(dlon[0]) == pytest.approx(lon + 122.4, rel=1e-4)
    _, lat, _ = GEOD.fwd(-122.4, 37.75, 0, 1000)
    assert float(dlat[0]) == pytest.approx(lat - 37.75, rel=1e-4)


def test_delays_are_capped_exponential_and_order_is_arrival(
    incidents: tuple[TrueIncident, ...], reports: list[GeneratedReport]
) -> None:
    delays = np.array([r.delay_s for r in reports])
    assert delays.min() >= 0 and delays.max() <= 1800
    assert delays.mean() == pytest.approx(180 * (1 - math.exp(-10)), rel=0.07)
    assert [r.arrival_order for r in reports] == list(range(len(reports)))
    assert all(a.arrival_s <= b.arrival_s for a, b in pairwise(reports))
    # observed_at is the true time (no jitter by default).
    truth = by_id(incidents)
    assert all(r.observed_s == truth[r.incident_id].observed_at.timestamp() for r in reports)
    capped = generate(incidents[:500], GeneratorParams(delay_cap_s=60))
    capped_delays = np.array([r.delay_s for r in capped])
    assert capped_delays.max() == pytest.approx(60)
    assert (np.isclose(capped_delays, 60)).mean() == pytest.approx(math.exp(-60 / 180), abs=0.06)


def test_confusion_rate_and_related_types(reports: list[GeneratedReport]) -> None:
    confused = [r for r in reports if r.event_type != r.true_event_type]
    assert len(confused) / len(reports) == pytest.approx(0.05, abs=0.012)
    assert all(r.event_type in related_types(r.true_event_type) for r in confused)
    assert all(b in RELATED_TYPES[a] for a in RELATED_TYPES for b in RELATED_TYPES[a])
    assert all(a in RELATED_TYPES[b] for a in RELATED_TYPES for b in RELATED_TYPES[a])
    assert related_types("fire") == ("smoke",) and "medical" in related_types("traffic_collision")
    assert related_types("warrant") == ("other",)  # no entry: mistaken for the generic type


def test_no_confusion_when_switched_off(incidents: tuple[TrueIncident, ...]) -> None:
    clean = generate(incidents[:500], GeneratorParams(confusion=0.0))
    assert all(r.event_type == r.true_event_type for r in clean)


def test_community_is_the_polygon_containing_the_noisy_point(
    reports: list[GeneratedReport],
) -> None:
    world = sf_world()
    polygons = dict(zip(world.index.ids, world.index.polygons, strict=True))
    outside = 0
    for r in reports:
        point = shapely.Point(r.lon, r.lat)
        if polygons[r.community_id].covers(point):
            continue
        # Off every polygon (in the bay): the nearest one.
        outside += 1
        assert not any(p.covers(point) for p in polygons.values())
        distance = polygons[r.community_id].distance(point)
        assert all(p.distance(point) >= distance for p in polygons.values())
    assert outside < len(reports) * 0.01


def test_density_folds_days_keeping_the_time_of_day(incidents: tuple[TrueIncident, ...]) -> None:
    folded = fold_days(incidents, 4)
    first = min(i.observed_at for i in incidents).date()
    for before, after in zip(incidents, folded, strict=True):
        assert after.observed_at.time() == before.observed_at.time()
        assert (after.observed_at.date() - first).days == (
            before.observed_at.date() - first
        ).days // 4
        assert replace(after, observed_at=before.observed_at) == before
    days = {i.observed_at.date() for i in incidents}
    assert len({i.observed_at.date() for i in folded}) == math.ceil(len(days) / 4)
    dense = generate(incidents[:300], GeneratorParams(density=2))
    plain = generate(incidents[:300])
    # Same draws, only the time moved: places and sources are those of the plain run.
    assert sorted((r.lon, r.lat) for r in dense) == sorted((r.lon, r.lat) for r in plain)
    with pytest.raises(ValueError):
        fold_days(incidents, 0)


# --- the figures ----------------------------------------------------------------------------


def test_evaluate_scores_and_counts(reports: list[GeneratedReport]) -> None:
    perfect = evaluate(reports, oracle)
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)
    assert perfect["predicted_incidents"] == perfect["true_incidents"] == N_INCIDENTS
    assert perfect["corroborated_share"] == perfect["true_corroborated_share"]
    assert perfect["incidents_per_1000_reports"] == pytest.approx(1000 * N_INCIDENTS / len(reports))
    # A report the clusterer loses is an incident of its own.
    sizes = Counter(r.incident_id for r in reports)
    lost = next(r.report_id for r in reports if sizes[r.incident_id] > 1)
    lossy = evaluate(
        reports, lambda rs: {r.report_id: r.incident_id for r in rs if r.report_id != lost}
    )
    assert lossy["unclustered"] == 1 and lossy["precision"] == 1.0 and lossy["recall"] < 1.0
    with pytest.raises(ValueError):
        evaluate(reports[:5], lambda rs: {"not a report": 0})
    baseline = evaluate(reports, naive_baseline)
    assert 0.5 < baseline["f1"] < 1.0 and baseline["recall"] > baseline["precision"]


def test_sweep_rows() -> None:
    four = ("default", "noise x2", "density x2", "density x4")
    rows = sweep(oracle, name="oracle", incidents=300, variants=select(four))
    assert [(r["variant"], r["method"]) for r in rows] == [
        (v, m) for v in four for m in ("oracle", "naive baseline")
    ]
    assert all(r["f1"] == 1.0 for r in rows if r["method"] == "oracle")
    assert {r["sigma_m"] for r in rows} == {50.0, 100.0}
    assert {r["density"] for r in rows} == {1, 2, 4}
    only_baseline = sweep(None, incidents=100, variants=[("default", {})])
    assert [r["method"] for r in only_baseline] == ["naive baseline"]
