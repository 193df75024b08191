"""Valid and invalid wire samples of the event contract (``schemas/event.v1.json``).

Every sample is the JSON *text* (bytes) a producer could put on ``hub.events.v1``, with a short
name and the verdict the contract demands. ``tests/test_event_contract.py`` runs both the JSON
Schema and the pydantic model over each one. The texts are built from a base event by small
edits so that each invalid sample breaks exactly one rule.
"""

from __future__ import annotations

import copy
import json
from typing import Any, NamedTuple

EVENT_ID = "6f1c2a4e-3b7d-4c1e-9a2b-8d5e6f7a8b9c"
REF_1 = "0b0e6f3e-7f55-4a59-8d8c-2f1d4c3b2a10"
REF_2 = "9d2f7c8a-1e4b-4f6a-b3c2-5a6d7e8f9012"

# San Francisco City Hall and a small block around it (lon, lat).
LON, LAT = -122.4193, 37.7793
SQUARE = [[-122.42, 37.77], [-122.41, 37.77], [-122.41, 37.78], [-122.42, 37.78], [-122.42, 37.77]]
HOLE = [[-122.418, 37.772], [-122.418, 37.775], [-122.415, 37.775], [-122.418, 37.772]]

MINIMAL: dict[str, Any] = {
    "event_id": EVENT_ID,
    "source": {"system": "sfpd-incidents", "connector": "csv"},
    "kind": "incident",
    "category": "Security",
    "event_type": "robbery",
    "observed_at": "2018-12-01T00:25:00-08:00",
    "geometry": {"type": "Point", "coordinates": [LON, LAT]},
}

FULL: dict[str, Any] = {
    "event_id": EVENT_ID,
    "community_id": "Bayview Hunters Point",
    "source": {"system": "sfpd-incidents", "connector": "csv", "reporter": "r-5f2a"},
    "kind": "alert",
    "category": "Fire",
    "severity": "Moderate",
    "urgency": "Immediate",
    "certainty": "Observed",
    "status": "actual",
    "event_type": "gas_leak",
    "observed_at": "2018-12-01T08:25:00.250Z",
    "geometry": {"type": "Point", "coordinates": [LON, LAT]},
    "properties": {"row_id": 74339603074, "tags": ["a", "b"], "nested": {"ok": True, "x": 1.5}},
    "refs": [REF_1, REF_2],
}


DROP = object()  # marker for edit(): remove the field


class Sample(NamedTuple):
    name: str
    raw: bytes
    valid: bool


def dumps(obj: Any) -> bytes:
    # json.dumps writes NaN/Infinity for non-finite floats, which is what some samples need.
    return json.dumps(obj, ensure_ascii=False).encode()


def edit(base: dict[str, Any] = MINIMAL, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base``; ``key=value`` sets a field, ``key=DROP`` removes it."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def with_geometry(geom_type: str, coordinates: Any) -> dict[str, Any]:
    return edit(geometry={"type": geom_type, "coordinates": coordinates})


def at(observed_at: Any) -> bytes:
    return dumps(edit(observed_at=observed_at))


def point(*coords: Any) -> bytes:
    return dumps(with_geometry("Point", list(coords)))


VALID: list[Sample] = [
    Sample("minimal", dumps(MINIMAL), True),
    Sample("full", dumps(FULL), True),
    Sample("point_with_altitude", point(LON, LAT, 52.5), True),
    Sample("point_integer_coordinates", point(-122, 37), True),
    Sample("linestring", dumps(with_geometry("LineString", [[LON, LAT], [-122.41, 37.78]])), True),
    Sample(
        "linestring_at_the_coordinate_limits",
        dumps(with_geometry("LineString", [[-180, -90], [180, 90], [-180.0, 90.0]])),
        True,
    ),
    Sample("polygon_with_hole", dumps(with_geometry("Polygon", [SQUARE, HOLE])), True),
    Sample(
        "multipolygon",
        dumps(
            with_geometry(
                "MultiPolygon",
                [
                    [SQUARE, HOLE],
                    [[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]],
                ],
            )
        ),
        True,
    ),
    Sample("offset_z", at("2018-12-01T08:25:00Z"), True),
    Sample("offset_plus_0800", at("2018-12-01T16:25:00+08:00"), True),
    Sample("offset_minus_0800", at("2018-12-01T00:25:00-08:00"), True),
    Sample("fractional_seconds_millis", at("2018-12-01T08:25:00.123Z"), True),
    Sample("fractional_seconds_nanos", at("2018-12-01T16:25:00.123456789+08:00"), True),
    Sample("leap_day", at("2020-02-29T12:00:00+05:30"), True),
    Sample("status_exercise", dumps(edit(status="exercise", kind="observation")), True),
    Sample(
        "nullable_fields_null",
        dumps(
            edit(
                FULL, community_id=None, source={"system": "s", "connector": "c", "reporter": None}
            )
        ),
        True,
    ),
    Sample("uuid_uppercase", dumps(edit(event_id=EVENT_ID.upper())), True),
    Sample("cancel_with_refs", dumps(edit(kind="cancel", refs=[REF_1])), True),
    Sample("community_id_unicode", dumps(edit(community_id="朝阳区 望京街道")), True),
]

_required = ["event_id", "source", "kind", "category", "event_type", "observed_at", "geometry"]

INVALID: list[Sample] = [
    # observed_at
    Sample("ts_without_offset", at("2018-12-01T00:25:00"), False),
    Sample("ts_space_separator", at("2018-12-01 00:25:00-08:00"), False),
    Sample("ts_date_only", at("2018-12-01"), False),
    Sample("ts_unix_number", at(1543652700), False),
    Sample("ts_feb_30", at("2018-02-30T00:00:00Z"), False),
    Sample("ts_hour_24", at("2018-12-01T24:00:00Z"), False),
    Sample("ts_offset_without_colon", at("2018-12-01T16:25:00+0800"), False),
    Sample("ts_trailing_newline", at("2018-12-01T08:25:00Z\n"), False),
    # event_id / refs
    Sample("uuid_without_hyphens", dumps(edit(event_id=EVENT_ID.replace("-", ""))), False),
    Sample("uuid_in_braces", dumps(edit(event_id="{" + EVENT_ID + "}")), False),
    Sample("uuid_not_hex", dumps(edit(event_id="6f1c2a4e-3b7d-4c1e-9a2b-8d5e6f7a8b9g")), False),
    Sample("uuid_urn", dumps(edit(event_id="urn:uuid:" + EVENT_ID)), False),
    Sample("refs_with_non_uuid", dumps(edit(refs=[REF_1, "incident-42"])), False),
    # coordinates
    Sample("lon_180_0001", point(180.0001, 0), False),
    Sample("lat_minus_90_5", point(0, -90.5), False),
    Sample("nan_literal_in_coordinates", point(float("nan"), LAT), False),
    Sample("infinity_literal_in_coordinates", point(LON, float("inf")), False),
    Sample("minus_infinity_altitude", point(LON, LAT, float("-inf")), False),
    Sample("overflow_1e400_altitude", point(LON, LAT, 0).replace(b", 0]", b", 1e400]"), False),
    Sample("coordinates_as_strings", point(str(LON), str(LAT)), False),
    Sample("coordinates_as_booleans", point(True, False), False),
    Sample("point_one_number", point(LON), False),
    Sample("point_four_numbers", point(LON, LAT, 1.0, 2.0), False),
    Sample("linestring_one_position", dumps(with_geometry("LineString", [[LON, LAT]])), False),
    Sample(
        "polygon_ring_three_positions",
        dumps(with_geometry("Polygon", [SQUARE[:2] + SQUARE[:1]])),
        False,
    ),
    Sample("polygon_no_rings", dumps(with_geometry("Polygon", [])), False),
    Sample(
        "geometrycollection",
        dumps(
            edit(
                geometry={
                    "type": "GeometryCollection",
                    "geometries": [{"type": "Point", "coordinates": [LON, LAT]}],
                }
            )
        ),
        False,
    ),
    Sample("geometry_null", dumps(edit(geometry=None)), False),
    Sample("geometry_lowercase_type", dumps(with_geometry("point", [LON, LAT])), False),
    # required fields, one missing at a time
    *[Sample(f"missing_{field}", dumps(edit(**{field: DROP})), False) for field in _required],
    Sample("source_missing_system", dumps(edit(source={"connector": "csv"})), False),
    Sample(
        "source_extra_field", dumps(edit(source={"system": "s", "connector": "c", "x": 1})), False
    ),
    Sample("extra_top_level_field", dumps(edit(priority=1)), False),
    # vocabularies
    Sample("unknown_kind", dumps(edit(kind="rumour")), False),
    Sample("cap_word_lowercase", dumps(edit(severity="moderate")), False),
    Sample("unknown_category", dumps(edit(category="Crime")), False),
    Sample("status_capitalised_exercise", dumps(edit(status="Exercise")), False),
    Sample("severity_null", dumps(edit(severity=None)), False),
    Sample("event_type_uppercase", dumps(edit(event_type="Fire")), False),
    Sample("event_type_space", dumps(edit(event_type="gas leak")), False),
    Sample("event_type_trailing_newline", dumps(edit(event_type="fire\n")), False),
    Sample("event_type_too_long", dumps(edit(event_type="x" * 65)), False),
    # properties / community
    Sample("properties_array", dumps(edit(properties=[1, 2])), False),
    Sample("properties_string", dumps(edit(properties="x=1")), False),
    Sample("nan_literal_in_properties", dumps(edit(properties={"depth": float("nan")})), False),
    Sample("community_id_empty", dumps(edit(community_id="")), False),
    Sample("community_id_201_chars", dumps(edit(community_id="区" * 201)), False),
    # not an event at all
    Sample("message_is_array", dumps([MINIMAL]), False),
    Sample("message_is_null", b"null", False),
    Sample("not_json", b"Incident Datetime,Latitude,Longitude\n", False),
    Sample("empty_message", b"", False),
    Sample("trailing_garbage", dumps(MINIMAL) + b"}", False),
    Sample("utf8_bom", b"\xef\xbb\xbf" + dumps(MINIMAL), False),
    Sample(
        "invalid_utf8", dumps(edit(community_id="Mission")).replace(b"Mission", b"Missi\xff"), False
    ),
]

SAMPLES: list[Sample] = VALID + INVALID

# Polygon rings whose first and last positions differ. JSON Schema cannot compare two array
# items, so only the pydantic model (and thus fusion) can reject these; see the schema's
# description.
UNCLOSED_RINGS: list[Sample] = [
    Sample(
        "polygon_ring_not_closed",
        dumps(with_geometry("Polygon", [[*SQUARE[:-1], SQUARE[1]]])),
        False,
    ),
    Sample(
        "polygon_hole_not_closed",
        dumps(with_geometry("Polygon", [SQUARE, [*HOLE[:-1], HOLE[1]]])),
        False,
    ),
    Sample(
        "ring_closed_in_2d_but_not_in_altitude",
        dumps(with_geometry("Polygon", [[[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 0, 2]]])),
        False,
    ),
]
