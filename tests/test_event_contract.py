"""The JSON Schema (``schemas/event.v1.json``) and the pydantic model agree on every sample.

Fusion validates each Kafka message with the pydantic model; producers outside the hub read
the JSON Schema. Both must say the same thing about the same bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas.event import CATEGORIES, KINDS, SEVERITIES, Event, load_event_schema, parse_event
from tests.event_samples import SAMPLES, UNCLOSED_RINGS, VALID, Sample

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = load_event_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def schema_errors(validator: Draft202012Validator, raw: bytes) -> list[str]:
    """Errors of the JSON Schema path: a strict parser, then the 2020-12 validator.

    orjson rejects what JSON does not have (NaN, Infinity, numbers overflowing to infinity),
    invalid UTF-8 and a byte-order mark; ``json.loads`` would let the first three through.
    """
    try:
        instance = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def pydantic_errors(raw: bytes) -> list[str]:
    try:
        parse_event(raw)
    except ValidationError as exc:
        return [f"{e['loc']}: {e['msg']}" for e in exc.errors()]
    return []


def test_sample_set_is_large_and_mixed() -> None:
    names = [s.name for s in SAMPLES]
    assert len(names) == len(set(names)), "sample names must be unique"
    valid = sum(s.valid for s in SAMPLES)
    assert valid >= 15 and len(SAMPLES) - valid >= 25, (valid, len(SAMPLES) - valid)


def test_format_assertions_are_live() -> None:
    # Without rfc3339-validator, jsonschema silently skips date-time; uuid needs nothing extra.
    # If either check were off, the agreement test below would pass for the wrong reason.
    assert FORMAT_CHECKER.conforms("2018-12-01T00:25:00-08:00", "date-time")
    assert not FORMAT_CHECKER.conforms("2018-02-30T00:25:00-08:00", "date-time")
    assert not FORMAT_CHECKER.conforms("2018-12-01T00:25:00", "date-time")
    assert FORMAT_CHECKER.conforms("6f1c2a4e-3b7d-4c1e-9a2b-8d5e6f7a8b9c", "uuid")
    assert not FORMAT_CHECKER.conforms("6f1c2a4e3b7d4c1e9a2b8d5e6f7a8b9c", "uuid")
    assert not FORMAT_CHECKER.conforms("{6f1c2a4e-3b7d-4c1e-9a2b-8d5e6f7a8b9c}", "uuid")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_json_schema_verdict(validator: Draft202012Validator, sample: Sample) -> None:
    errors = schema_errors(validator, sample.raw)
    assert (not errors) == sample.valid, f"{sample.name}: expected valid={sample.valid}, {errors}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_pydantic_verdict(sample: Sample) -> None:
    errors = pydantic_errors(sample.raw)
    assert (not errors) == sample.valid, f"{sample.name}: expected valid={sample.valid}, {errors}"


@pytest.mark.parametrize("sample", VALID, ids=lambda s: s.name)
def test_valid_sample_round_trips(validator: Draft202012Validator, sample: Sample) -> None:
    event = parse_event(sample.raw)
    wire = event.to_json()
    assert parse_event(wire) == event
    assert schema_errors(validator, wire) == []
    # What the producer sent survives, apart from normalisation (defaults, timestamp form).
    sent, kept = orjson.loads(sample.raw), orjson.loads(wire)
    assert kept["geometry"] == sent["geometry"]
    assert kept["properties"] == sent.get("properties", {})
    assert uuid.UUID(kept["event_id"]) == uuid.UUID(sent["event_id"])
    kept_at, sent_at = kept["observed_at"], sent["observed_at"]
    assert datetime.fromisoformat(kept_at) == datetime.fromisoformat(sent_at)


@pytest.mark.parametrize("sample", UNCLOSED_RINGS, ids=lambda s: s.name)
def test_unclosed_ring_is_a_known_gap_of_json_schema(
    validator: Draft202012Validator, sample: Sample
) -> None:
    # JSON Schema cannot compare an array's first and last items; the schema says so, and the
    # pydantic model (what fusion runs) is the one that rejects the ring.
    assert "closed" in load_event_schema()["description"]
    errors = pydantic_errors(sample.raw)
    assert any("not closed" in e for e in errors), errors
    assert schema_errors(validator, sample.raw) == [], "the schema gained a closure check?"


# --- property test: events built from valid parts survive the wire ---

_text = st.text(min_size=1, max_size=20)
_uuid_text = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
_lon = st.floats(-180, 180, allow_nan=False)
_lat = st.floats(-90, 90, allow_nan=False)
_alt = st.floats(-1e4, 1e6, allow_nan=False)
_position = st.one_of(st.tuples(_lon, _lat), st.tuples(_lon, _lat, _alt)).map(list)


def _ring(positions: list[list[float]]) -> list[list[float]]:
    return [*positions, positions[0]]


_ring_st = st.lists(_position, min_size=3, max_size=6).map(_ring)
_polygon = st.lists(_ring_st, min_size=1, max_size=3)
_geometry = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": _position}),
    st.fixed_dictionaries(
        {"type": st.just("LineString"), "coordinates": st.lists(_position, min_size=2, max_size=6)}
    ),
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": _polygon}),
    st.fixed_dictionaries(
        {"type": st.just("MultiPolygon"), "coordinates": st.lists(_polygon, min_size=1, max_size=3)}
    ),
)
_json_value: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_offset = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def _rfc3339(dt: datetime, zulu: bool) -> str:
    text = dt.isoformat()
    return text[:-6] + "Z" if zulu and text.endswith("+00:00") else text


_observed_at = st.builds(
    _rfc3339,
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=_offset),
    st.booleans(),
)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_event_dict = st.fixed_dictionaries(
    {
        "event_id": _uuid_text,
        "source": st.fixed_dictionaries(
            {"system": _text, "connector": _text}, optional={"reporter": _optional(_text)}
        ),
        "kind": st.sampled_from(KINDS),
        "category": st.sampled_from(CATEGORIES),
        "event_type": st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        "observed_at": _observed_at,
        "geometry": _geometry,
    },
    optional={
        "community_id": _optional(st.text(min_size=1, max_size=200)),
        "severity": st.sampled_from(SEVERITIES),
        "urgency": st.sampled_from(["Immediate", "Expected", "Future", "Past", "Unknown"]),
        "certainty": st.sampled_from(["Observed", "Likely", "Possible", "Unlikely", "Unknown"]),
        "status": st.sampled_from(["actual", "exercise", "test"]),
        "properties": st.dictionaries(st.text(max_size=8), _json_value, max_size=4),
        "refs": st.lists(_uuid_text, max_size=3),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_event_dict)
def test_generated_events_round_trip(validator: Draft202012Validator, data: dict[str, Any]) -> None:
    raw = orjson.dumps(data)
    assert schema_errors(validator, raw) == []
    event = parse_event(raw)
    assert isinstance(event, Event)
    wire = event.to_json()
    assert parse_event(wire) == event
    assert schema_errors(validator, wire) == []
