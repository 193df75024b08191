"""Risk per grid cell, the pure part (``hub.fusion.risk``): the shipped numbers do what
config/risk.toml promises, contributions decay and refuted ones count nothing, levels rise at
once and fall with hysteresis (property-based), and a bad file is refused naming the key."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.fusion.risk import (
    LEVELS,
    SHIPPED,
    IncidentFacts,
    RiskConfig,
    RiskConfigError,
    cell_score,
    contribution,
    negligible,
    next_level,
)
from hub.fusion.risk_stage import RiskStage, _Cell
from schemas.event import SEVERITIES

CFG = RiskConfig.load()
NOW = datetime(2018, 12, 5, 21, 40, tzinfo=UTC)
CERTAINTIES = tuple(CFG.certainty)
STATES = ("reported", "corroborated", "verified", "refuted")
TYPES = ("fire", "medical", "flood", "larceny_theft", "no_such_type")


def facts(
    severity: str = "Moderate",
    certainty: str = "Observed",
    verification: str = "reported",
    event_type: str = "fire",
    age: timedelta = timedelta(0),
) -> IncidentFacts:
    return IncidentFacts(severity, certainty, verification, event_type, NOW - age)


def rank(level: str) -> int:
    return LEVELS.index(level)


# --- the shipped numbers ------------------------------------------------------------------------


def test_one_lone_unverified_moderate_report_is_yellow_at_most() -> None:
    for certainty in CERTAINTIES:
        score = cell_score([contribution(facts(certainty=certainty), NOW, CFG)])
        assert rank(next_level(None, score, CFG)) <= rank("yellow")
    observed = contribution(facts(), NOW, CFG)
    assert next_level(None, observed, CFG) == "yellow"  # seen with one's own eyes: be aware


def test_two_corroborated_severe_reports_are_orange_or_red() -> None:
    # Two independent reports of one fire are one corroborated incident.
    one = contribution(facts("Severe", verification="corroborated"), NOW, CFG)
    assert next_level(None, one, CFG) in ("orange", "red")
    # Two such incidents in one cell: red.
    assert next_level(None, cell_score([one, one]), CFG) == "red"


def test_a_lone_report_reaches_orange_only_when_extreme() -> None:
    for severity in SEVERITIES:
        level = next_level(None, contribution(facts(severity), NOW, CFG), CFG)
        assert (rank(level) >= rank("orange")) == (severity == "Extreme"), severity


def test_flood_outlasts_fire_and_medical_is_shortest() -> None:
    assert CFG.half_life_of("flood") > CFG.half_life_of("fire") > CFG.half_life_of("medical")
    assert CFG.half_life_of("no_such_type") == CFG.half_life


def test_beyond_the_horizon_nothing_counts_and_a_future_report_is_fresh() -> None:
    fire = facts("Extreme", verification="verified")
    assert contribution(fire, NOW + CFG.horizon + timedelta(seconds=1), CFG) == 0.0
    assert contribution(fire, NOW + CFG.horizon, CFG) > 0.0
    assert contribution(fire, NOW - timedelta(hours=3), CFG) == contribution(fire, NOW, CFG)


def test_odd_words_weigh_as_unknown_instead_of_failing() -> None:
    odd = contribution(facts("Catastrophic", "Sure", "rumoured"), NOW, CFG)
    plain = contribution(facts("Unknown", "Unknown", "reported"), NOW, CFG)
    assert odd == plain > 0


# --- properties ---------------------------------------------------------------------------------

ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=30))


@given(
    severity=st.sampled_from(SEVERITIES),
    certainty=st.sampled_from(CERTAINTIES),
    state=st.sampled_from(STATES[:3]),
    event_type=st.sampled_from(TYPES),
    age=ages,
)
def test_a_contribution_halves_after_one_half_life(
    severity: str, certainty: str, state: str, event_type: str, age: timedelta
) -> None:
    f = facts(severity, certainty, state, event_type, age)
    now = contribution(f, NOW, CFG)
    later = contribution(f, NOW + CFG.half_life_of(event_type), CFG)
    if age + CFG.half_life_of(event_type) <= CFG.horizon:
        assert later == pytest.approx(now / 2, rel=1e-9)
    else:
        assert later == 0.0


@given(
    severity=st.sampled_from(SEVERITIES),
    certainty=st.sampled_from(CERTAINTIES),
    event_type=st.sampled_from(TYPES),
    age=ages,
)
def test_refuted_contributes_nothing(
    severity: str, certainty: str, event_type: str, age: timedelta
) -> None:
    assert contribution(facts(severity, certainty, "refuted", event_type, age), NOW, CFG) == 0.0


scores = st.floats(min_value=0, max_value=50, allow_nan=False)


@given(a=scores, b=scores)
def test_levels_are_monotonic_in_the_score_for_a_fresh_cell(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert rank(next_level(None, low, CFG)) <= rank(next_level(None, high, CFG))


@given(previous=st.sampled_from((None, *LEVELS)), score=scores)
def test_a_level_is_reached_at_once_and_never_kept_below_its_band(
    previous: str | None, score: float
) -> None:
    level = next_level(previous, score, CFG)
    fresh = next_level(None, score, CFG)
    assert rank(level) >= rank(fresh)  # rises as soon as a threshold is reached
    if level != fresh:  # held by hysteresis: only down from where it was, inside the band
        assert previous is not None and rank(level) <= rank(previous)
        threshold = CFG.thresholds[rank(level) - 1]
        assert threshold * (1 - CFG.hysteresis) <= score < threshold


@st.composite
def within_one_band(draw: Any) -> tuple[str | None, list[float]]:
    """A previous level, and scores all within one level's hysteresis band
    [threshold x (1 - hysteresis), threshold] (the ends included)."""
    threshold = draw(st.sampled_from(CFG.thresholds))
    low = threshold * (1 - CFG.hysteresis)
    band = st.one_of(st.just(low), st.just(threshold), st.floats(low, threshold))
    return draw(st.sampled_from((None, *LEVELS))), draw(st.lists(band, min_size=2, max_size=40))


@given(case=within_one_band())
def test_a_score_oscillating_within_one_band_changes_the_level_at_most_once(
    case: tuple[str | None, list[float]],
) -> None:
    previous, sequence = case
    # The first score brings the cell into the band (from wherever it was)...
    level = next_level(previous, sequence[0], CFG)
    changes = 0
    for score in sequence[1:]:  # ...then wobbling inside it changes the level once at most
        following = next_level(level, score, CFG)
        changes += following != level
        level = following
    assert changes <= 1


def test_several_levels_at_once_both_ways() -> None:
    assert next_level("blue", CFG.thresholds[2], CFG) == "red"
    assert next_level("red", 0.0, CFG) == "blue"
    assert next_level("red", float("nan"), CFG) == "blue"
    assert negligible("blue", 0.0, CFG) and not negligible("yellow", 0.0, CFG)


def test_a_cell_keeps_what_is_worth_keeping() -> None:
    stage = RiskStage(CFG)
    key = ("actual", "h3/892830828cbffff")
    clocks = {"actual": NOW}
    assert stage.score(key, None, None, clocks) is None  # nothing to show, nothing stored
    gone = stage.score(key, "yellow", None, clocks)
    assert gone is not None and gone.forget and gone.level == "blue"
    assert stage.score(("exercise", key[1]), "red", None, clocks) is None  # no clock: no score
    found = _Cell()
    for community in ("Mission", "Bernal Heights", "Mission"):
        found.incidents[uuid.uuid4()] = facts("Severe", verification="corroborated")
        found.communities[community] += 1
    cell = stage.score(key, None, found, clocks)
    assert cell is not None and cell.level == "red" and cell.incidents == 3
    assert cell.community_id == "Mission" and not cell.forget


# --- a bad file ---------------------------------------------------------------------------------


def shipped() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text())


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *path, last = dotted.split(".")
    table = doc
    for key in path:
        table = table[key]
    if value is _DELETE:
        del table[last]
    else:
        table[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("severity.Catastrophic", 9.0, "severity.Catastrophic: unknown key"),
        ("severity.Minor", _DELETE, "severity.Minor: missing"),
        ("certainty.Likely", -0.1, "certainty.Likely: must be within"),
        ("verification.refuted", 0.1, "verification.refuted: must be 0"),
        ("verification.verified", True, "verification.verified: must be a number"),
        ("recency.half_life", 0, "recency.half_life: must be > 0"),
        ("recency.types.flood", 5000, "recency.types.flood: must be within [0, 2880]"),
        ("recency.types.Flood", 60, "recency.types.Flood: not an event type"),
        ("recency.horizon", 60 * 24 * 365, "recency.horizon: must be within"),
        ("levels.orange", 1.1, "levels.orange: x (1 - hysteresis)"),
        ("levels.hysteresis", 1, "levels.hysteresis: must be a fraction"),
        ("levels.negligible", 2.0, "levels.negligible: must be below levels.yellow"),
        ("levels", 3, "levels: must be a table"),
        ("stage.decay_cells", 0, "stage.decay_cells: must be a whole number"),
        ("stage.clock_lead", "15", "stage.clock_lead: must be a number"),
        ("colours", {}, "colours: unknown key"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(
    tmp_path: Path, key: str, value: Any, message: str
) -> None:
    path = tmp_path / "risk.toml"
    doc = _set(shipped(), key, value)
    path.write_text(_toml(doc))
    with pytest.raises(RiskConfigError) as raised:
        RiskConfig.load(path)
    assert str(raised.value).startswith(f"{path}: {message}"), str(raised.value)


def test_an_unreadable_or_broken_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RiskConfigError, match="cannot read"):
        RiskConfig.load(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[levels\nyellow = 1")
    with pytest.raises(RiskConfigError, match="not valid TOML"):
        RiskConfig.load(broken)


def test_an_override_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    path.write_text(_toml(_set(shipped(), "recency.types.fire", 30)))
    assert RiskConfig.load(path).half_life_of("fire") == timedelta(minutes=30)
    assert RiskConfig.load(path).source == str(path)


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer (tomllib reads only): scalars first, then sub-tables."""
    lines = [f"[{prefix}]"] if prefix else []
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_value(value)}")
    out = "\n".join(lines) + "\n"
    for key, value in doc.items():
        if isinstance(value, dict):
            out += _toml(value, f"{prefix}.{key}" if prefix else key)
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
