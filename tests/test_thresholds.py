"""Sensor thresholds, pure logic: the shipped file, strict validation, per-community overrides,
``step`` (threshold crossing and hysteresis, also as properties), and ``evaluate`` (a sensor's
readings in time order, late and malformed ones). Readings are synthetic."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.fusion.rules import Rules
from hub.fusion.thresholds import (
    LEVELS,
    SHIPPED,
    ThresholdRule,
    Thresholds,
    ThresholdsError,
    rank,
    step,
    warning_id,
)
from hub.fusion.warnings import Track, evaluate, sensor_of

SHIPPED_DOC = tomllib.loads(SHIPPED.read_text())
WATER = Thresholds.load().types["water_level"]  # 0.15 / 0.30 / 0.60 m, band 0.05
T0 = datetime(2034, 3, 1, 8, 0, tzinfo=UTC)


def levels(rule: ThresholdRule, values: list[float], start: str | None = None) -> list[str]:
    """The level after each reading, with a "+" where a warning was raised."""
    out, state = [], start
    for v in values:
        state, raised = step(state, v, rule)
        out.append(state + ("+" if raised else ""))
    return out


# --- the shipped file -------------------------------------------------------------------------


def test_shipped_thresholds_and_their_warnings_correlate_with_reports() -> None:
    t = Thresholds.load()
    assert t.event_types == ["gas_concentration", "temperature", "water_level"]
    assert t.source == "config/thresholds.toml"
    assert WATER.limits == (0.15, 0.30, 0.60) and WATER.band == 0.05 and WATER.unit == "m"
    assert WATER.source == "config/thresholds.toml#types.water_level"
    rules = Rules.load()
    # a gauge's warning joins people's flood reports, a detector's their gas-leak reports
    assert rules.compatible_types(t.types["water_level"].warning_type, "flood")
    assert rules.compatible_types(t.types["gas_concentration"].warning_type, "odor")
    assert not rules.compatible_types(t.types["temperature"].warning_type, "fire")
    assert t.rule("water_level", "Mission") is WATER and t.rule("noise", "Mission") is None


def test_threshold_crossing_and_hysteresis() -> None:
    assert levels(WATER, [0.05, 0.16, 0.12, 0.17, 0.11, 0.16]) == [
        "normal",
        "yellow+",  # crossed
        "yellow",  # 0.12 >= 0.15 - 0.05: still in the band
        "yellow",
        "yellow",
        "yellow",  # back above the limit: no second warning
    ]
    # fell back beyond the band, then rose again: a new warning
    assert levels(WATER, [0.09, 0.16], "yellow") == ["normal", "yellow+"]
    # levels are skipped on the way up, and held per level (nested) on the way down
    assert levels(WATER, [0.7, 0.56, 0.54, 0.26, 0.24, 0.0]) == [
        "red+",
        "red",  # 0.56 >= 0.60 - 0.05
        "orange",  # left red, but holds orange
        "orange",
        "yellow",
        "normal",
    ]
    assert levels(WATER, [0.35, 0.61], "yellow") == ["orange+", "red+"]
    assert levels(WATER, [0.15], "bogus") == ["yellow+"]  # an unknown stored level is normal


def test_below_rules_mirror_above_rules() -> None:
    cold = _rule("below", (5.0, 0.0, -5.0), 1.0)
    assert levels(cold, [8.0, 4.9, 5.9, 6.1, 5.0, -6.0, -4.5]) == [
        "normal",
        "yellow+",
        "yellow",  # 5.9 <= 5 + 1
        "normal",
        "yellow+",
        "red+",
        "red",
    ]


# --- step, as properties ----------------------------------------------------------------------


@st.composite
def rules(draw: st.DrawFn) -> ThresholdRule:
    base = draw(st.floats(-1000, 1000, allow_nan=False))
    gaps = draw(st.lists(st.floats(0.01, 100), min_size=2, max_size=2))
    limits = (base, base + gaps[0], base + gaps[0] + gaps[1])
    band = draw(st.floats(0, min(gaps) * 0.99))
    if draw(st.booleans()):
        return _rule("above", limits, band)
    return _rule("below", (-limits[0], -limits[1], -limits[2]), band)


def _values(rule: ThresholdRule) -> st.SearchStrategy[list[float]]:
    lo, hi = sorted((rule.limits[0], rule.limits[2]))
    span = hi - lo + 1
    return st.lists(st.floats(lo - span, hi + span, allow_nan=False), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_raises_are_exactly_the_upward_level_changes(data: st.DataObject) -> None:
    rule = data.draw(rules())
    state: str | None = None
    for value in data.draw(_values(rule)):
        new, raised = step(state, value, rule)
        assert raised == (rank(new) > rank(state))
        # never below what the value reaches; above it only within that level's band
        assert rank(new) >= rank(rule.level_of(value))
        assert new == rule.level_of(value) or rule.holds(value, new)
        state = new


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_value_within_one_band_never_raises_twice(data: st.DataObject) -> None:
    """Values moving around one limit, never back beyond its band nor up to the next limit:
    one warning at the first crossing at most, however they oscillate; none once in it."""
    rule = data.draw(rules())
    i = data.draw(st.integers(1, 3))  # the level whose limit the values move around
    level, limit = LEVELS[i], rule.limit(LEVELS[i])
    sign = 1.0 if rule.direction == "above" else -1.0
    lo = limit - sign * rule.band
    hi = rule.limit(LEVELS[i + 1]) if i < 3 else limit + sign * 1000
    fractions = st.lists(st.floats(0, 1, exclude_max=True), max_size=40)
    values = [lo + f * (hi - lo) for f in data.draw(fractions)]
    values = [v for v in values if rule.holds(v, level) and rank(rule.level_of(v)) <= i]
    assert sum(r for _, r in step_all(rule, values, LEVELS[i - 1])) <= 1
    assert not any(r for _, r in step_all(rule, values, level))
    assert all(s == level for s, _ in step_all(rule, values, level))


def step_all(rule: ThresholdRule, values: list[float], start: str | None) -> list[tuple[str, bool]]:
    out, state = [], start
    for v in values:
        state, raised = step(state, v, rule)
        out.append((state, raised))
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_below_is_above_mirrored(data: st.DataObject) -> None:
    rule = data.draw(rules())
    mirror = _rule(
        "below" if rule.direction == "above" else "above",
        (-rule.limits[0], -rule.limits[1], -rule.limits[2]),
        rule.band,
    )
    values = data.draw(_values(rule))
    assert step_all(rule, values, None) == step_all(mirror, [-v for v in values], None)


def test_warning_ids_are_deterministic() -> None:
    obs = uuid.uuid4()
    assert warning_id(obs, "red") == warning_id(uuid.UUID(str(obs)), "red")
    assert warning_id(obs, "red") != warning_id(obs, "orange") != warning_id(uuid.uuid4(), "orange")


# --- validation -------------------------------------------------------------------------------


def _rule(direction: str, limits: tuple[float, float, float], band: float) -> ThresholdRule:
    entry = {
        "unit": "u",
        "direction": direction,
        "warning_type": "test_warning",
        "yellow": limits[0],
        "orange": limits[1],
        "red": limits[2],
        "band": band,
    }
    return Thresholds.parse({"types": {"t": entry}}).types["t"]


def _doc(**water: Any) -> dict[str, Any]:
    entry = {**SHIPPED_DOC["types"]["water_level"], **water}
    return {"types": {"water_level": {k: v for k, v in entry.items() if v is not None}}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": {}}, "x.toml: type: unknown key"),
        (_doc(colour="red"), "x.toml: types.water_level.colour: unknown key"),
        (_doc(unit=None), "x.toml: types.water_level.unit: missing"),
        (_doc(direction="up"), 'types.water_level.direction: must be "above" or "below"'),
        (_doc(warning_type="Flood!"), "types.water_level.warning_type: 'Flood!' is not an event"),
        (_doc(orange="0.3"), "types.water_level.orange: must be a finite number, got '0.3'"),
        (_doc(band=True), "types.water_level.band: must be a finite number, got True"),
        (_doc(red=float("inf")), "types.water_level.red: must be a finite number"),
        (_doc(orange=0.7), "types.water_level.orange: yellow, orange, red must rise strictly"),
        (_doc(direction="below"), "orange: yellow, orange, red must fall strictly"),
        (_doc(band=0.15), "types.water_level.band: must be >= 0 and below the gap between two"),
        (_doc(band=-0.01), "types.water_level.band: must be >= 0"),
        (_doc(property=""), "types.water_level.property: must be a non-empty string"),
        ({"types": {"Water": {}}}, "types.Water: not an event type"),
        ({"types": {"water": 1}}, "types.water: must be a table"),
        ({"communities": {"Mission": {"water_level": {}}}}, 'communities."Mission".water_level'),
        (
            {"communities": {"Mission": {"types": {"noise": {"yellow": 1}}}}},
            'communities."Mission".types.noise.band: missing',  # no [types.noise] to inherit
        ),
        (
            {**_doc(), "communities": {"Mission": {"types": {"water_level": {"yellow": 0.5}}}}},
            'communities."Mission".types.water_level.orange: yellow, orange, red must rise',
        ),
    ],
)
def test_invalid_files_name_the_file_and_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ThresholdsError) as err:
        Thresholds.parse(doc, "x.toml")
    assert message in str(err.value)


def test_unreadable_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ThresholdsError, match="cannot read"):
        Thresholds.load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[types.water_level\n")
    with pytest.raises(ThresholdsError, match=f"{broken}: not valid TOML"):
        Thresholds.load(broken)


def test_community_overrides_take_the_rest_from_the_type(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(
        SHIPPED.read_text()
        + '\n[communities."Bayview Hunters Point".types.water_level]\n'
        + "yellow = 0.10\norange = 0.20\nred = 0.45\n"
        + '\n[communities."Bayview Hunters Point".types.noise]\n'
        + 'unit = "dBA"\ndirection = "above"\nwarning_type = "noise"\n'
        + "yellow = 70\norange = 80\nred = 90\nband = 3\n"
    )
    t = Thresholds.load(path)
    own = t.rule("water_level", "Bayview Hunters Point")
    assert own is not None and own.limits == (0.10, 0.20, 0.45)
    assert (own.band, own.unit, own.warning_type, own.property) == (0.05, "m", "flood", "value")
    assert own.source == f'{path}#communities."Bayview Hunters Point".types.water_level'
    base = t.rule("water_level", "Mission")  # no override there
    assert base is not None and base.limits == WATER.limits
    assert base.source == f"{path}#types.water_level"
    assert t.rule("noise", "Mission") is None  # noise has rules in Bayview only
    assert t.event_types == ["gas_concentration", "noise", "temperature", "water_level"]
    assert levels(own, [0.12]) == ["yellow+"] and levels(base, [0.12]) == ["normal"]


# --- evaluate: a batch of observations ----------------------------------------------------------


def _obs(value: Any, minutes: float, **over: Any) -> dict[str, Any]:
    row = {
        "event_id": uuid.uuid4(),
        "status": "actual",
        "event_type": "water_level",
        "community_id": "Mission",
        "observed_at": T0 + timedelta(minutes=minutes),
        "source_system": "gauges",
        "reporter": None,
        "properties": {"value": value, "sensor_id": "g1", "unit": "m"},
    }
    row.update(over)
    return row


def test_evaluate_orders_readings_and_chains_escalations() -> None:
    rows = [_obs(0.35, 10), _obs(0.16, 5), _obs(0.7, 20), _obs(0.0, 30), _obs(0.2, 40)]
    out = evaluate(rows, {}, Thresholds.load())
    assert [(w.level, w.value) for w in out.raised] == [
        ("yellow", 0.16),
        ("orange", 0.35),
        ("red", 0.7),
        ("yellow", 0.2),
    ]
    yellow, orange, red, again = out.raised
    # an escalation refs the episode's earlier warning; a new episode starts afresh
    assert (yellow.escalates, orange.escalates, red.escalates) == (
        None,
        yellow.event_id,
        orange.event_id,
    )
    assert again.escalates is None
    assert red.properties() == {
        "level": "red",
        "value": 0.7,
        "limit": 0.6,
        "unit": "m",
        "sensor": "gauges/g1",
        "observation_id": str(rows[2]["event_id"]),
        "threshold_source": "config/thresholds.toml#types.water_level",
    }
    (track,) = out.tracks.values()
    assert track.level == "yellow" and track.warning_event_id == again.event_id


def test_evaluate_skips_late_and_malformed_readings(caplog: pytest.LogCaptureFixture) -> None:
    key = ("actual", "gauges/g1", "water_level")
    known = {key: Track("Mission", "yellow", 0.2, T0 + timedelta(minutes=30), uuid.uuid4(), None)}
    bad = [
        _obs("high", 40),
        _obs(None, 41),
        _obs(True, 42),
        _obs(10**400, 43),
        _obs(0.5, 44, properties={"value": 0.5, "sensor_id": "g1", "unit": "ft"}),
        _obs(0.5, 45, properties={"sensor_id": "g1"}),
    ]
    late = _obs(0.7, 10)  # older than the stored state: changes nothing
    other = _obs(0.9, 50, event_type="noise")  # no rule
    out = evaluate([*bad, late, other, _obs(0.31, 60)], known, Thresholds.load())
    assert out.skipped == len(bad)
    assert [(w.level, w.escalates) for w in out.raised] == [("orange", None)]
    assert out.tracks[key].observed_at == T0 + timedelta(minutes=60)
    assert caplog.text.count("observation skipped by the thresholds") == len(bad)
    assert "unit 'ft', the thresholds are in 'm'" in caplog.text


def test_sensor_identity_and_pictures_apart() -> None:
    assert sensor_of(_obs(1, 0)) == "gauges/g1"
    assert sensor_of(_obs(1, 0, reporter="p7", properties={"value": 1})) == "gauges/p7"
    assert sensor_of(_obs(1, 0, properties={"value": 1, "sensor_id": ""})) == "gauges/-"
    assert sensor_of(_obs(1, 0, properties={"value": 1, "sensor_id": 42})) == "gauges/42"
    # the same sensor in a drill and for real: two states, two warnings
    out = evaluate([_obs(0.2, 0), _obs(0.2, 1, status="exercise")], {}, Thresholds.load())
    assert len(out.raised) == 2 and len(out.tracks) == 2
