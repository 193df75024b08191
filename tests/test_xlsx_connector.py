"""The xlsx connector kind: real SFPD rows in an .xlsx and an .ods workbook (date cells, number
cells) make the same events as the same rows from the CSV; bad rows are rejected with reasons;
a second run sends only new and changed rows; and the events reach fusion through the broker."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from python_calamine import CalamineWorkbook

from connectors.changes import version_id
from connectors.csv_source import RowConverter, SourceError, event_id_for, open_csv
from connectors.mapping import MappingError, load_mapping, parse_mapping
from connectors.run import RunOptions, SourceRun
from connectors.settings import ConnectorSettings
from connectors.sheet_source import Sheet
from connectors.xlsx_connector import XlsxConnector
from hub.settings import Settings
from hub.store.db import connect
from schemas.event import Event, parse_event
from tests.fusion_helpers import consume_all, fusion_stats, running_worker, wait_until
from tests.sheet_helpers import Value, typed_rows, write_ods, write_xlsx

ROOT = Path(__file__).resolve().parents[1]
SFPD = ROOT / "data" / "sf" / "sfpd_incident_reports_2018-12.csv"
CSV_MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents.toml"
XLSX_MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents-xlsx.toml"
ROWS = 1500  # the first 1,500 real rows: 37 of them have no coordinates


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("books")
    header, rows = typed_rows(SFPD, 0, ROWS, text_every=10)
    return {
        "xlsx": write_xlsx(folder / "reports.xlsx", header, rows),
        "ods": write_ods(folder / "reports.ods", header, rows),
    }


def _csv_conversion() -> tuple[list[Event], list[tuple[int, str]]]:
    mapping = load_mapping(CSV_MAPPING)
    with open_csv(SFPD, mapping) as (_, rows):
        chunk = [r for _, r in zip(range(ROWS), rows, strict=False)]
    conv = RowConverter(mapping).convert(chunk)
    return conv.events, [(r.row, r.reason) for r in conv.rejects]


def _wire(event: Event) -> dict[str, Any]:
    data = json.loads(event.to_json())
    data["source"].pop("connector")
    # A spreadsheet keeps numbers to 15-16 significant digits (XlsxWriter writes %.16G, Excel
    # shows 15): -122.43414453855247 comes back as -122.4341445385525, 3e-14 degrees away.
    data["geometry"]["coordinates"] = [round(c, 9) for c in data["geometry"]["coordinates"]]
    return data


@pytest.mark.parametrize("kind", ["xlsx", "ods"])
def test_workbook_rows_make_the_csv_events(books: dict[str, Path], kind: str) -> None:
    mapping = load_mapping(XLSX_MAPPING)
    with Sheet(books[kind], mapping).open(None) as (header, rows):
        mapping.check_header(header, kind)
        conv = RowConverter(mapping, kind="xlsx").convert(list(rows))
    csv_events, csv_rejects = _csv_conversion()
    assert len(conv.events) == len(csv_events) == 1463
    assert [(r.row, r.reason) for r in conv.rejects] == csv_rejects
    assert Counter(reason for _, reason in csv_rejects) == {"missing coordinates": 37}
    assert [_wire(e) for e in conv.events] == [_wire(e) for e in csv_events]
    assert {e.source.connector for e in conv.events} == {"xlsx"}
    assert {e.source.connector for e in csv_events} == {"csv"}
    # Both kinds of time cell were read: date cells, and every 10th row's text.
    sheet = CalamineWorkbook.from_path(books[kind]).get_sheet_by_name("Reports").to_python()
    times = Counter(type(r[0]).__name__ for r in sheet[1:])
    # calamine gives an .xlsx date cell at midnight as a date: read as that midnight.
    assert times["datetime"] + times["date"] == ROWS - ROWS // 10
    assert times["str"] == ROWS // 10
    assert conv.events[0].event_id == event_id_for("sfpd-incidents", "74339603074")
    assert conv.events[0].properties["incident_id"] == "743396"  # a number cell, as typed


SMALL: dict[str, Any] = {
    "source": {"system": "grid-sheet", "id": "id"},
    "time": {"column": "when"},
    "location": {"lat": "lat", "lon": "lon"},
    "event": {"category": {"column": "cat"}, "event_type": "flood"},
    "xlsx": {"sheet": 1, "header_row": 3},
}


def test_bad_rows_are_rejected_with_reasons(tmp_path: Path) -> None:
    header = ["id", "when", "lat", "lon", "cat"]
    rows: list[list[Value]] = [
        [1, "2018-12-01T10:00:00-08:00", 37.77, -122.42, "Met"],  # text with an offset: fine
        [2, datetime(2018, 12, 1, 10), 37.77, -122.42, "Met"],  # date cell, no zone
        [3, "yesterday", 37.77, -122.42, "Met"],
        [4, "2018-12-01T10:00:00Z", None, -122.42, "Met"],
        [5, "2018-12-01T10:00:00Z", 37.77, -122.42, "Spooky"],
        [1, "2018-12-01T10:00:00Z", 37.77, -122.42, "Met"],
        [None, "2018-12-01T10:00:00Z", 37.77, -122.42, "Met"],
    ]
    book = write_xlsx(tmp_path / "grid.xlsx", header, rows, title="Flood reports, ward 3")
    mapping = parse_mapping(SMALL)
    with Sheet(book, mapping).open(None) as (got, data):
        assert got == header  # found on row 3, under the title
        conv = RowConverter(mapping, kind="xlsx").convert(list(data))
    assert [(r.row, r.reason) for r in conv.rejects] == [
        (2, "time without offset and no [time] timezone"),
        (3, "unparsable time"),
        (4, "missing coordinates"),
        (5, "invalid category"),
        (6, "duplicate row id"),
        (7, "missing row id"),
    ]
    assert "'2018-12-01T10:00:00'" in conv.rejects[0].detail
    assert [e.properties["row_id"] for e in conv.events] == ["1"]
    zoned = parse_mapping({**SMALL, "time": {"column": "when", "timezone": "America/Los_Angeles"}})
    with Sheet(book, zoned).open(None) as (_, data):
        events = RowConverter(zoned, kind="xlsx").convert(list(data)).events
    assert [json.loads(e.to_json())["observed_at"] for e in events][:2] == [
        "2018-12-01T10:00:00-08:00",
        "2018-12-01T10:00:00-08:00",  # the date cell, in the mapping's zone
    ]


def test_sheet_selection_and_unreadable_files(books: dict[str, Path], tmp_path: Path) -> None:
    by_index = parse_mapping({**json.loads(json.dumps(SMALL)), "xlsx": {"sheet": 7}})
    with pytest.raises(SourceError, match=r"no sheet 7.*'Notes', 'Reports'"):
        Sheet(books["xlsx"], by_index).open(None).__enter__()
    not_a_book = tmp_path / "x.xlsx"
    not_a_book.write_text("id,when\n1,2\n")
    with pytest.raises(SourceError, match="not a readable spreadsheet"):
        Sheet(not_a_book, by_index).open(None).__enter__()
    with pytest.raises(SourceError, match="cannot open"):
        Sheet(tmp_path / "absent.ods", by_index).open(None).__enter__()
    with pytest.raises(MappingError, match="did you mean 'sheet'"):
        parse_mapping({**SMALL, "xlsx": {"shet": "Reports"}})


def _settings(hub: Settings, state: Path) -> ConnectorSettings:
    return ConnectorSettings(
        kafka_bootstrap=hub.kafka_bootstrap,
        events_topic=hub.events_topic,
        tile_zoom=hub.tile_zoom,
        state_dir=state,
    )


@pytest.fixture
def edited(tmp_path: Path) -> Iterator[tuple[Path, list[str], list[list[Any]]]]:
    header, rows = typed_rows(SFPD, 0, 300)
    yield write_xlsx(tmp_path / "reports.xlsx", header, rows), header, rows


def test_second_run_sends_only_new_and_changed_rows(
    hub_settings: Settings,
    sf_communities: list[str],
    tmp_path: Path,
    edited: tuple[Path, list[str], list[list[Any]]],
) -> None:
    book, header, rows = edited
    settings = _settings(hub_settings, tmp_path / "state")
    connector = XlsxConnector.from_mapping_file(XLSX_MAPPING, settings)
    first = connector.run(book, RunOptions())
    assert first.delivered and first.rows_read == 300
    assert first.events_produced == 300 - first.rejected and first.unchanged == 0

    again = connector.run(book, RunOptions())  # nothing changed: nothing sent
    assert again.events_produced == 0 and again.unchanged == first.events_produced
    assert again.rejected == first.rejected  # still reported, still not sent

    category, row_id = header.index("Incident Category"), header.index("Row ID")
    changed = next(r for r in rows if r[header.index("Latitude")] is not None)
    changed[category] = "Arson"
    more_header, more = typed_rows(SFPD, 300, 310)
    assert more_header == header
    write_xlsx(book, header, [*rows, *more])
    third = connector.run(book, RunOptions())
    new = sum(1 for r in more if r[header.index("Latitude")] is not None)
    assert third.events_produced == new + 1 and third.changed == 1
    assert third.rows_read == third.events_produced + third.rejected + third.unchanged

    sent = [
        parse_event(m.value)
        for m in consume_all(
            hub_settings, hub_settings.events_topic, first.events_produced + new + 1
        )
    ]
    assert len(sent) == first.events_produced + new + 1
    assert len({e.event_id for e in sent}) == len(sent)  # nothing sent twice
    base = event_id_for("sfpd-incidents", str(changed[row_id]))
    update = next(e for e in sent if e.refs)
    assert update.refs == [base] and update.event_type == "fire"
    assert update.event_id != base and update.event_id.version == 5

    query = "SELECT event_id, refs, source_connector FROM event WHERE event_id = ANY(%s)"
    ids = [e.event_id for e in sent]
    with connect(hub_settings) as conn:  # the CSV tests may have stored the same rows first
        earlier = {r[0] for r in conn.execute(query, (ids,)).fetchall()}
    with running_worker(hub_settings):
        wait_until(lambda: fusion_stats(hub_settings)["consumed"] >= len(sent), 60, "fusion")
    with connect(hub_settings) as conn:
        stored = conn.execute(query, (ids,)).fetchall()
    assert len(stored) == len(sent)
    assert {r[2] for r in stored if r[0] not in earlier} == {"xlsx"}
    assert [r[1] for r in stored if r[0] == update.event_id] == [[base]]


def test_version_ids_chain_and_cursor_survives_a_crash_before_save(
    hub_settings: Settings, tmp_path: Path, edited: tuple[Path, list[str], list[list[Any]]]
) -> None:
    # The cursor is saved after the outbox commit: a run that never saved it (a crash in
    # between) sends the very same ids again, which the outbox replaces and fusion drops.
    book, _, _ = edited
    mapping = load_mapping(XLSX_MAPPING)
    settings = _settings(hub_settings, tmp_path / "state")
    run = SourceRun(Sheet(book, mapping), mapping, settings, RunOptions(), kind="xlsx")
    plain = run.run()  # not incremental: no cursor written, like a crash before the save
    cursor = settings.state_dir / "cursor" / "sfpd-incidents.sqlite"
    assert not cursor.exists()
    first = XlsxConnector(mapping, settings).run(book, RunOptions())
    assert first.events_produced == plain.events_produced and cursor.exists()
    sent = consume_all(hub_settings, hub_settings.events_topic, 2 * plain.events_produced)
    assert len({parse_event(m.value).event_id for m in sent}) == plain.events_produced
    a = version_id(uuid.UUID(int=1), b"x" * 16)
    assert a == version_id(uuid.UUID(int=1), b"x" * 16) != version_id(uuid.UUID(int=2), b"x" * 16)
