"""The figures of the quality harness on hand-made cases (B-cubed, corroboration, the largest
incident), the naive baseline, and the hub's model as the harness calls it in process. Pure:
no broker, no database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Geod

from hub.bench.fusion_quality import (
    BCubed,
    Corroboration,
    GeneratedReport,
    GeneratorParams,
    Largest,
    TrueIncident,
    as_report,
    bcubed,
    big_incidents,
    corroborated_share,
    corroboration,
    evaluate,
    generate,
    hub_clusterer,
    in_process_rows,
    largest_incident,
    metres_to_degrees,
    naive_baseline,
    true_incidents,
)
from hub.bench.fusion_table import quality_rows, verdicts
from hub.fusion.incident.ids import esc, source_key
from hub.fusion.rules import Rules

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def incidents() -> tuple[TrueIncident, ...]:
    return true_incidents()[:2000]


# --- B-cubed --------------------------------------------------------------------------------


def test_bcubed_hand_worked() -> None:
    items = [str(i) for i in range(6)]
    truth = {k: k[0] for k in items}  # all singletons
    assert bcubed(truth, truth) == BCubed(1.0, 1.0, 1.0)
    one = dict.fromkeys(items, "x")
    assert bcubed(one, truth) == pytest.approx(BCubed(1 / 6, 1.0, 2 / 7))
    assert bcubed(truth, one) == pytest.approx(BCubed(1.0, 1 / 6, 2 / 7))
    assert bcubed(one, one) == BCubed(1.0, 1.0, 1.0)


def test_bcubed_textbook_example() -> None:
    """Bagga & Baldwin (1998), fig. 2: truth {1-5} {6,7} {8-12}; the response merges the two
    last classes. Precision (5*1 + 2*2/7 + 5*5/7) / 12 = 16/21, recall 1."""
    truth = {str(i): "a" if i <= 5 else "b" if i <= 7 else "c" for i in range(1, 13)}
    response = {k: "a" if v == "a" else "bc" for k, v in truth.items()}
    got = bcubed(response, truth)
    assert got.precision == pytest.approx(16 / 21) and got.recall == 1.0
    assert got.f1 == pytest.approx(2 * 16 / 21 / (1 + 16 / 21))


def test_bcubed_refuses_different_items() -> None:
    with pytest.raises(ValueError):
        bcubed({"a": 1}, {"b": 1})
    with pytest.raises(ValueError):
        bcubed({}, {})


labels = st.dictionaries(st.text(max_size=3), st.integers(0, 5), min_size=1, max_size=40)


@given(labels, st.data())
def test_bcubed_properties(truth: dict[str, int], data: st.DataObject) -> None:
    predicted = {k: data.draw(st.integers(0, 5)) for k in truth}
    score = bcubed(predicted, truth)
    assert 0 < score.precision <= 1 and 0 < score.recall <= 1 and 0 < score.f1 <= 1
    assert bcubed(truth, truth) == BCubed(1.0, 1.0, 1.0)
    # Only the grouping counts, not the labels.
    relabel = {label: f"c{label * 7 + 3}" for label in range(6)}
    assert bcubed({k: relabel[v] for k, v in predicted.items()}, truth) == pytest.approx(score)
    # Swapping the roles swaps precision and recall.
    swapped = bcubed(truth, predicted)
    assert (swapped.precision, swapped.recall) == pytest.approx((score.recall, score.precision))
    # Splitting everything into singletons never lowers precision.
    assert bcubed({k: k for k in truth}, truth).precision == 1.0


# --- the naive baseline and the figures ------------------------------------------------------

T0 = datetime.fromisoformat("2018-12-01T12:00:00-08:00").timestamp()


def hand(
    name: str,
    east_m: float,
    north_m: float,
    minutes: float,
    *,
    order: int,
    source: str = "s",
    incident: str | None = None,
) -> GeneratedReport:
    """A report ``east_m``/``north_m`` metres from a fixed point, ``minutes`` after noon, of
    the true incident ``incident`` (its own when None)."""
    dlon, dlat = metres_to_degrees(np.array([east_m]), np.array([north_m]), np.array([37.76]))
    t = T0 + minutes * 60
    return GeneratedReport(
        report_id=name,
        incident_id=name if incident is None else incident,
        arrival_order=order,
        arrival_s=t,
        observed_s=t,
        lon=-122.42 + float(dlon[0]),
        lat=37.76 + float(dlat[0]),
        event_type="fire",
        true_event_type="fire",
        community_id="Mission",
        source_key=source,
        displacement_m=0.0,
        event=b"{}",
    )


def groups(clusters: dict[str, int]) -> set[frozenset[str]]:
    members: dict[int, set[str]] = {}
    for k, c in clusters.items():
        members.setdefault(c, set()).add(k)
    return {frozenset(m) for m in members.values()}


def test_baseline_hand_cases() -> None:
    near = [hand("a", 0, 0, 0, order=0), hand("b", 200, 0, 5, order=1)]
    assert groups(naive_baseline(near)) == {frozenset("ab")}
    far = [hand("a", 0, 0, 0, order=0), hand("b", 350, 0, 5, order=1)]
    assert groups(naive_baseline(far)) == {frozenset("a"), frozenset("b")}
    late = [hand("a", 0, 0, 0, order=0), hand("b", 100, 0, 31, order=1)]
    assert groups(naive_baseline(late)) == {frozenset("a"), frozenset("b")}
    # Open while the last report is within 30 min: a chain of reports keeps it open.
    chain = [hand(n, 0, 0, 25 * i, order=i) for i, n in enumerate("abc")]
    assert groups(naive_baseline(chain)) == {frozenset("abc")}
    # Nearest of two open clusters; distance to the centroid (a+b at 100 m east, c at 450 m).
    two = [
        hand("a", 0, 0, 0, order=0),
        hand("b", 200, 0, 1, order=1),
        hand("c", 450, 0, 2, order=2),
        hand("d", 290, 0, 3, order=3),
    ]
    assert groups(naive_baseline(two)) == {frozenset("ab"), frozenset("cd")}
    # Arrival order decides: processed the other way round, d starts next to c first.
    reordered = [replace(r, arrival_order=3 - r.arrival_order) for r in two]
    assert groups(naive_baseline(reordered)) == {frozenset("a"), frozenset("bcd")}
    assert naive_baseline([]) == {}


def test_baseline_is_exact_on_isolated_noise_free_incidents(
    incidents: tuple[TrueIncident, ...],
) -> None:
    """Without GPS noise, the reports of an incident with no other incident within 1 km and
    2 h all land in one cluster of their own: recall and precision 1 for them."""
    reports = generate(incidents, GeneratorParams(sigma_m=0.0))
    clusters = naive_baseline(reports)
    isolated = _isolated(incidents, 1000.0, 7200.0)
    assert len(isolated) > 100
    members: dict[int, set[str]] = {}
    for r in reports:
        members.setdefault(clusters[r.report_id], set()).add(r.incident_id)
    seen = Counter(clusters[r.report_id] for r in reports if r.incident_id in isolated)
    for r in reports:
        if r.incident_id in isolated:
            assert members[clusters[r.report_id]] == {r.incident_id}
    per_incident = Counter(r.incident_id for r in reports if r.incident_id in isolated)
    assert sorted(seen.values()) == sorted(per_incident.values())  # one cluster per incident


def _isolated(incidents: Sequence[TrueIncident], metres: float, seconds: float) -> set[str]:
    lon = np.array([i.lon for i in incidents])
    lat = np.array([i.lat for i in incidents])
    t = np.array([i.observed_at.timestamp() for i in incidents])
    out = set()
    for k, inc in enumerate(incidents):
        close_in_time = np.flatnonzero(np.abs(t - t[k]) <= seconds)
        close_in_time = close_in_time[close_in_time != k]
        if len(close_in_time):
            n = len(close_in_time)
            _, _, d = GEOD.inv(np.full(n, lon[k]), np.full(n, lat[k]),
                               lon[close_in_time], lat[close_in_time])  # fmt: skip
            if np.min(d) <= metres:
                continue
        out.add(inc.incident_id)
    return out


def test_corroboration_needs_independent_sources() -> None:
    rs = [
        hand("a", 0, 0, 0, order=0, source="grid.mission/p1"),
        hand("b", 10, 0, 1, order=1, source="grid.mission/p1"),  # same reporter again
        hand("c", 900, 0, 0, order=2, source="grid.mission/p2"),
        hand("d", 910, 0, 1, order=3, source="sf-311-hotline"),
    ]
    clusters = {"a": 0, "b": 0, "c": 1, "d": 1}
    assert corroborated_share(rs, clusters) == 0.5


# --- false corroboration and the largest incident ---------------------------------------------


def test_false_corroboration_hand_worked() -> None:
    """Four clusters, three corroborated: one by its own incident's two sources (true), one
    only by merging two single-source incidents (false), one by its own two sources with a
    stranger merged in (true, but mixed). The fourth has one source twice: not corroborated."""
    rs = [
        hand("a1", 0, 0, 0, order=0, source="p1", incident="A"),
        hand("a2", 5, 0, 1, order=1, source="p2", incident="A"),
        hand("b1", 900, 0, 0, order=2, source="p1", incident="B"),
        hand("c1", 905, 0, 1, order=3, source="p2", incident="C"),
        hand("d1", 1800, 0, 0, order=4, source="p1", incident="D"),
        hand("d2", 1805, 0, 1, order=5, source="p3", incident="D"),
        hand("e1", 1810, 0, 2, order=6, source="p1", incident="E"),
        hand("f1", 2700, 0, 0, order=7, source="p4", incident="F"),
        hand("f2", 2705, 0, 1, order=8, source="p4", incident="F"),
    ]
    clusters = {"a1": 0, "a2": 0, "b1": 1, "c1": 1, "d1": 2, "d2": 2, "e1": 2, "f1": 3, "f2": 3}
    got = corroboration(rs, clusters)
    assert got == Corroboration(corroborated=3, false=1, mixed=2)
    assert (got.false_share, got.mixed_share) == (1 / 3, 2 / 3)
    truth = {r.report_id: r.incident_id for r in rs}
    assert corroboration(rs, truth) == Corroboration(corroborated=2, false=0, mixed=0)


def test_false_corroboration_counts_sources_within_the_cluster() -> None:
    """A true incident reported by two sources, split so that each half sits with a stranger
    reported by another source: both clusters are corroborated, neither by its own incident."""
    rs = [
        hand("a1", 0, 0, 0, order=0, source="p1", incident="A"),
        hand("a2", 5, 0, 1, order=1, source="p2", incident="A"),
        hand("b1", 10, 0, 2, order=2, source="p3", incident="B"),
        hand("c1", 15, 0, 3, order=3, source="p4", incident="C"),
    ]
    split = {"a1": "x", "b1": "x", "a2": "y", "c1": "y"}
    assert corroboration(rs, split) == Corroboration(2, 2, 2)
    whole = {"a1": "x", "a2": "x", "b1": "x", "c1": "y"}
    assert corroboration(rs, whole) == Corroboration(1, 0, 1)
    assert corroboration([], {}) == Corroboration(0, 0, 0)
    assert Corroboration(0, 0, 0).false_share == 0.0  # no corroborated incident: no false one


def test_largest_incident_and_big_ones() -> None:
    rs = [hand(f"a{k}", 0, 0, k, order=k, incident="A") for k in range(7)]
    rs += [hand(f"b{k}", 0, 0, k, order=10 + k, incident="B") for k in range(3)]
    rs += [hand(f"c{k}", 900, 0, k, order=20 + k, incident="C") for k in range(4)]
    truth = {r.report_id: r.incident_id for r in rs}
    assert largest_incident(rs, truth) == Largest(7, 1, 1.0)
    merged = {r.report_id: "ab" if r.incident_id in "AB" else "c" for r in rs}
    assert largest_incident(rs, merged) == Largest(10, 2, 0.7)
    # Of two equally large clusters (A alone; B with C), the first in report order.
    tied = {r.report_id: "x" if r.incident_id == "A" else "y" for r in rs}
    assert largest_incident(rs, tied) == Largest(7, 1, 1.0)
    assert largest_incident(rs[::-1], tied) == Largest(7, 2, 4 / 7)
    assert largest_incident([], {}) == Largest(0, 0, 1.0)
    assert big_incidents(merged) == 1 and big_incidents(truth) == 0
    assert big_incidents(merged, at_least=4) == 2


def test_evaluate_reports_the_new_figures() -> None:
    rs = [hand(f"a{k}", 0, 0, k, order=k, source=f"p{k}", incident="A") for k in range(2)]
    rs += [hand("b0", 10, 0, 3, order=2, source="p0", incident="B")]
    rs += [hand("c0", 900, 0, 3, order=3, source="p0", incident="C")]
    rs += [hand("d0", 905, 0, 4, order=4, source="p1", incident="D")]
    glued = {"a0": 0, "a1": 0, "b0": 0, "c0": 1, "d0": 1}
    got = evaluate(rs, lambda _: glued)
    assert got["corroborated_incidents"] == 2
    assert got["false_corroboration"] == 0.5  # {c, d} owes its two sources to the merge
    assert got["mixed_corroborated"] == 1.0
    assert got["largest_incident"] == {"reports": 3, "true_incidents": 2, "purity": 2 / 3}
    assert got["true_largest_incident"] == 2
    assert got["incidents_10_plus"] == got["true_incidents_10_plus"] == 0
    oracle = evaluate(rs, lambda reports: {r.report_id: r.incident_id for r in reports})
    assert oracle["false_corroboration"] == oracle["mixed_corroborated"] == 0.0


def test_truth_never_falsely_corroborates(reports_2000: list[GeneratedReport]) -> None:
    """On generated reports: the true incidents have no false corroboration; gluing the
    single-source incidents in pairs has nothing else."""
    truth = {r.report_id: r.incident_id for r in reports_2000}
    assert corroboration(reports_2000, truth).false == 0
    sources = Counter(r.incident_id for r in reports_2000)
    lone = sorted({r.incident_id for r in reports_2000 if sources[r.incident_id] == 1})
    pair_of = {incident: k // 2 for k, incident in enumerate(lone)}
    paired = {
        r.report_id: ("pair", pair_of[r.incident_id])
        if r.incident_id in pair_of
        else truth[r.report_id]
        for r in reports_2000
    }
    got = corroboration(reports_2000, paired)
    distinct_pairs = sum(
        len({r.source_key for r in reports_2000 if pair_of.get(r.incident_id) == k}) >= 2
        for k in set(pair_of.values())
    )
    assert got.false == distinct_pairs > 100


@pytest.fixture(scope="module")
def reports_2000(incidents: tuple[TrueIncident, ...]) -> list[GeneratedReport]:
    return generate(incidents)


# --- the hub's model in process ---------------------------------------------------------------


def test_as_report_reads_the_event_as_fusion_does(reports_2000: list[GeneratedReport]) -> None:
    for r in reports_2000[:500]:
        event = orjson.loads(r.event)
        report = as_report(r)
        assert str(report.event_id) == r.report_id
        assert (report.lon, report.lat) == (r.lon, r.lat)
        assert report.observed_at.timestamp() == r.observed_s
        assert (report.event_type, report.community_id) == (r.event_type, r.community_id)
        assert (report.status, report.severity, report.certainty) == (
            event["status"],
            event["severity"],
            event["certainty"],
        )
        reporter = event["source"].get("reporter")
        if reporter is None:  # a system: itself, once
            assert report.source_key == f"s:{event['source']['system']}"
        else:  # a person: per community of the EVENT (as fusion keys it), not of the reporter
            assert report.source_key == f"r:{esc(r.community_id)}:{esc(reporter)}"
        assert report.source_key == source_key(reporter, event["source"]["system"], r.community_id)


def test_hub_clusterer_labels_every_report(reports_2000: list[GeneratedReport]) -> None:
    some = reports_2000[:400]
    found = hub_clusterer(some)
    assert set(found) == {r.report_id for r in some}
    # Without noise or confusion an incident's reports are one place, one time and one type:
    # never split, unless its type does not correlate at all (SFPD's "other").
    exact = generate(true_incidents()[:200], GeneratorParams(sigma_m=0.0, confusion=0.0))
    labels, rules = hub_clusterer(exact), Rules.load()
    by_incident: dict[str, set[Hashable]] = {}
    for r in exact:
        by_incident.setdefault(r.incident_id, set()).add(labels[r.report_id])
    split = {r.incident_id for r in exact if len(by_incident[r.incident_id]) > 1}
    assert all(not rules.rule(r.event_type).correlate for r in exact if r.incident_id in split)
    assert len(split) < len(by_incident) / 50


def test_in_process_rows() -> None:
    rows = in_process_rows(["default", "floods"], incidents=150)
    assert [(r["variant"], r["method"]) for r in rows] == [
        ("default", "hub"),
        ("default", "naive baseline"),
        ("floods", "hub"),
        ("floods", "naive baseline"),
    ]
    assert all(0 < r["f1"] <= 1 and 0 <= r["false_corroboration"] <= 1 for r in rows)
    assert rows[0]["true_incidents"] == 150 and rows[2]["true_incidents"] == 156  # 6 floods
    with pytest.raises(ValueError, match="unknown variants"):
        in_process_rows(["density x3"])


# --- the table's verdicts ---------------------------------------------------------------------


def _variant(f1: float, base_f1: float, false: float) -> dict[str, object]:
    figures = {
        "f1": f1,
        "precision": f1,
        "recall": f1,
        "false_corroboration": false,
        "mixed_corroborated": false,
        "corroborated_share": 0.5,
        "true_corroborated_share": 0.5,
        "largest_incident": {"reports": 4, "true_incidents": 1, "purity": 1.0},
        "true_largest_incident": 4,
        "incidents_10_plus": 0,
        "true_incidents_10_plus": 0,
        "incidents_per_1000_reports": 500,
        "true_incidents_per_1000_reports": 500,
    }
    return {
        "hub": figures,
        "baseline": figures | {"f1": base_f1},
        "f1_over_baseline": f1 - base_f1,
    }


def test_verdicts_hold_each_variant_to_its_own_targets() -> None:
    quality = {
        "default": _variant(0.951, 0.94, 0.019),  # F1 and false corroboration just pass
        "noise x2": _variant(0.93, 0.931, 0.01),  # 0.92 suffices, but below the baseline
        "hotspots": _variant(0.919, 0.90, 0.021),  # F1 and false corroboration just fail
    }
    measured, targets, passed = verdicts(quality, None)
    assert passed == {
        "f1": True,  # the default's figures under their own names, as before variants
        "f1_over_baseline": False,  # 0.951 - 0.94 is above, but not "clearly" (0.02)
        "default: f1": True,
        "default: f1_over_baseline": False,
        "default: false_corroboration_pct": True,
        "noise x2: f1": True,
        "noise x2: f1_over_baseline": False,
        "noise x2: false_corroboration_pct": True,
        "hotspots: f1": False,
        "hotspots: f1_over_baseline": True,
        "hotspots: false_corroboration_pct": False,
    }
    assert targets["default: f1"]["limit"] == 0.95 and targets["noise x2: f1"]["limit"] == 0.92
    assert targets["hotspots: false_corroboration_pct"] == {"limit": 2, "at_least": False}
    assert measured["hotspots: false_corroboration_pct"] == pytest.approx(2.1)
    rows = quality_rows("hotspots", quality["hotspots"])
    assert [r.passed for r in rows if r.target is not None] == [False, True, False]
    assert not any(r.figure == "reports stored" for r in rows)  # in process: nothing stored
