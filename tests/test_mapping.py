"""The TOML column mapping: the shipped files parse, and every mistake gets a clear message."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from connectors.mapping import ColumnValue, Mapping, MappingError, load_mapping, parse_mapping

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "config" / "mappings"

MINIMAL = """
[source]
system = "test-system"
id = "id"
[time]
column = "when"
timezone = "Europe/Paris"
[location]
lat = "lat"
lon = "lon"
[event]
category = "Safety"
event_type = "fire"
"""


def _load(tmp_path: Path, text: str) -> Mapping:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return load_mapping(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(MappingError) as info:
        _load(tmp_path, text)
    return str(info.value)


def _data(**sections: dict[str, Any]) -> dict[str, Any]:
    data = tomllib.loads(MINIMAL)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def test_shipped_sfpd_mapping_parses() -> None:
    mapping = load_mapping(MAPPINGS / "sfpd-incidents.toml")
    assert mapping.source.system == "sfpd-incidents"
    assert mapping.source.id == "Row ID"
    assert mapping.time.timezone == "America/Los_Angeles"
    assert mapping.location.lat == "Latitude" and mapping.location.crs == "EPSG:4326"
    assert mapping.event.category == "Security" and mapping.event.severity == "Moderate"
    assert isinstance(mapping.event.event_type, ColumnValue)
    assert mapping.event.event_type.map["Arson"] == "fire"
    assert mapping.event.event_type.default == "other"
    assert mapping.community.column == "Analysis Neighborhood"


def test_shipped_sffd_mapping_parses() -> None:
    mapping = load_mapping(MAPPINGS / "sffd-calls.toml")
    assert mapping.location.point == "Location" and mapping.location.order == "latlon"
    assert "None" in mapping.csv.null_values
    assert isinstance(mapping.event.category, ColumnValue)
    assert mapping.event.category.unmapped == "default"


def test_defaults(tmp_path: Path) -> None:
    mapping = _load(tmp_path, MINIMAL)
    assert mapping.source.connector is None  # the events get the kind: "csv", "xlsx", "sql"
    assert (mapping.event.kind, mapping.event.severity, mapping.event.status) == (
        "incident",
        "Unknown",
        "actual",
    )
    assert mapping.location.crs == "EPSG:4326"
    assert mapping.csv.delimiter == "," and mapping.csv.null_values == [""]
    assert mapping.community.column is None and mapping.properties.columns == []


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    text = MINIMAL.replace('category = "Safety"', 'category = "Safety"\nseverty = "Minor"')
    message = _error(tmp_path, text)
    assert "[event]" in message and "'severty'" in message and "did you mean 'severity'" in message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + '\n[comunity]\ncolumn = "x"\n')
    assert "unknown section [comunity]" in message and "did you mean 'community'" in message


def test_unknown_key_inside_a_value_table(tmp_path: Path) -> None:
    text = MINIMAL.replace('event_type = "fire"', 'event_type = { colum = "t", default = "x" }')
    message = _error(tmp_path, text)
    assert "'colum'" in message and "did you mean 'column'" in message
    assert "required key 'column' missing" in message
    assert "valid string" not in message  # the constant branch of the union is not noise here


def test_missing_required_key(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('id = "id"\n', ""))
    assert "[source]: required key 'id' missing" in message


def test_bad_timezone(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("Europe/Paris", "Mars/Olympus_Mons"))
    assert "[time] timezone" in message and "unknown time zone 'Mars/Olympus_Mons'" in message


def test_bad_crs(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('lon = "lon"', 'lon = "lon"\ncrs = "EPSG:999999"'))
    assert "[location] crs" in message and "unknown CRS 'EPSG:999999'" in message


def test_other_crs_accepted(tmp_path: Path) -> None:
    for crs in ("GCJ-02", "BD-09", "EPSG:32610", "EPSG:3857"):
        mapping = _load(tmp_path, MINIMAL.replace('lon = "lon"', f'lon = "lon"\ncrs = "{crs}"'))
        assert mapping.location.crs == crs


def test_bad_constant_cap_word(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('"Safety"', '"Securty"'))
    assert "[event] category" in message and "'Securty' is not valid" in message
    assert "Security" in message  # the expected words are listed


def test_bad_map_value_and_default(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'category = "Safety"',
        'severity = { column = "s", map = { "hi" = "Huge" }, default = "Tiny" }\n'
        'category = "Safety"',
    )
    message = _error(tmp_path, text)
    assert "map['hi'] 'Huge' is not valid" in message and "default 'Tiny' is not valid" in message


def test_constant_event_type_must_fit_the_pattern(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('event_type = "fire"', 'event_type = "Gas Leak"'))
    assert "[event] event_type" in message and "^[a-z][a-z0-9_]{0,63}$" in message


def test_several_errors_reported_together(tmp_path: Path) -> None:
    text = MINIMAL.replace("Europe/Paris", "Nowhere/Town").replace('"Safety"', '"Nope"')
    message = _error(tmp_path, text)
    assert "Nowhere/Town" in message and "'Nope'" in message


def test_location_needs_one_form() -> None:
    with pytest.raises(MappingError, match="give either lat and lon, or point"):
        parse_mapping(_data(location={"point": "p"}))
    with pytest.raises(MappingError, match="lat and lon go together"):
        data = _data()
        del data["location"]["lon"]
        parse_mapping(data)


def test_unmapped_default_needs_a_default() -> None:
    spec = {"column": "c", "unmapped": "default"}
    with pytest.raises(MappingError, match='unmapped = "default" needs a default'):
        parse_mapping(_data(event={"severity": spec}))


def test_bad_system_name_and_encoding() -> None:
    with pytest.raises(MappingError, match=r"\[source\] system"):
        parse_mapping(_data(source={"system": "has/slash"}))
    with pytest.raises(MappingError, match="unknown encoding 'klingon-8'"):
        parse_mapping(_data(csv={"encoding": "klingon-8"}))


def test_missing_column_names_column_and_key(tmp_path: Path) -> None:
    mapping = _load(tmp_path, MINIMAL + '[properties]\ncolumns = ["extra"]\n')
    mapping.check_header(["id", "when", "lat", "lon", "extra"], "ok.csv")
    with pytest.raises(MappingError) as info:
        mapping.check_header(["id", "lat", "lon"], "data.csv")
    message = str(info.value)
    assert message.startswith("data.csv: no column")
    assert "'when' ([time] column)" in message and "'extra' ([properties] columns)" in message
    assert "the file has 'id', 'lat', 'lon'" in message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read the mapping"):
        load_mapping(tmp_path / "absent.toml")
    message = _error(tmp_path, "[source\nsystem = 1")
    assert "not valid TOML" in message
