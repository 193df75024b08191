"""CSV connector: conversion on the real SFPD file, edge cases of every field, and end-to-end
runs against the real broker (delivery, replay, outbox durability across a broker outage)."""

from __future__ import annotations

import csv
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer
from typer.testing import CliRunner

from connectors import ConnectorSettings, convert_rows, load_mapping, run_csv
from connectors.csv_source import Conversion, RowConverter, event_id_for, open_csv, snake_case
from connectors.mapping import Mapping, parse_mapping
from connectors.outbox import Outbox, OutboxBusy
from geo.assign import CommunityIndex
from geo.crs import wgs84_to_gcj02
from geo.geojson import read_communities
from geo.tiles import tile_key
from hub.bus.kafka import EventLog
from hub.cli.main import app
from hub.settings import Settings, get_settings
from hub.stack.broker import free_port
from hub.store.db import connect
from schemas.event import Event, Point, parse_event
from tests.fusion_helpers import fusion_stats, running_worker, wait_until

ROOT = Path(__file__).resolve().parents[1]
SFPD = ROOT / "data" / "sf" / "sfpd_incident_reports_2018-12.csv"
SFFD = ROOT / "data" / "sf" / "sf_fire_calls_sample.csv"
HOODS = ROOT / "data" / "sf" / "sf_analysis_neighborhoods.geojson"
SFPD_MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents.toml"
SFFD_MAPPING = ROOT / "config" / "mappings" / "sffd-calls.toml"


@cache
def sf_index() -> CommunityIndex:
    rows, _ = read_communities(HOODS, "nhood", "nhood")
    return CommunityIndex.build([r.id for r in rows], [r.geom for r in rows])


@cache
def sfpd_rows() -> tuple[dict[str, str | None], ...]:
    with open_csv(SFPD, load_mapping(SFPD_MAPPING)) as (_, rows):
        return tuple(rows)


def lonlat(event: Event) -> tuple[float, float]:
    assert isinstance(event.geometry, Point)
    return event.geometry.coordinates[0], event.geometry.coordinates[1]


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


# --- the real SFPD file ---------------------------------------------------------------------


def test_sfpd_conversion_counts_and_reasons() -> None:
    conv = convert_rows(sfpd_rows(), load_mapping(SFPD_MAPPING), communities=sf_index())
    assert len(sfpd_rows()) == 11_884
    assert len(conv.rejects) == 608
    assert Counter(r.reason for r in conv.rejects) == {"missing coordinates": 608}
    assert all(not r.values["Latitude"] and not r.values["Longitude"] for r in conv.rejects)
    assert len(conv.events) == 11_276
    assert conv.unassigned == 0  # every event has a neighbourhood from the column
    assert conv.notes == {}  # December: no DST transition


def test_sfpd_times_carry_the_december_offset() -> None:
    conv = convert_rows(sfpd_rows()[:3000], load_mapping(SFPD_MAPPING))
    first = conv.events[0]
    assert first.observed_at.isoformat() == "2018-12-01T00:25:00-08:00"  # 12:25:00 AM, PST
    wire = [json.loads(e.to_json())["observed_at"] for e in conv.events]
    assert all(t.endswith("-08:00") for t in wire)


def test_sfpd_event_ids_deterministic_and_distinct() -> None:
    mapping = load_mapping(SFPD_MAPPING)
    a = [e.event_id for e in convert_rows(sfpd_rows(), mapping).events]
    b = [e.event_id for e in convert_rows(sfpd_rows(), mapping).events]
    assert a == b and len(set(a)) == len(a) == 11_276
    assert a[0] == uuid.uuid5(
        uuid.UUID("5a95dea2-7f76-48bd-8bf1-0fe167fd3195"), "sfpd-incidents/74339603074"
    )
    assert a[0] == event_id_for("sfpd-incidents", "74339603074")


def test_sfpd_column_community_matches_polygon_assignment() -> None:
    conv = convert_rows(sfpd_rows(), load_mapping(SFPD_MAPPING))
    lon = np.array([lonlat(e)[0] for e in conv.events])
    lat = np.array([lonlat(e)[1] for e in conv.events])
    by_polygon = sf_index().assign_ids(lon, lat)
    inside = [(e.community_id, p) for e, p in zip(conv.events, by_polygon, strict=True) if p]
    outside = [e for e, p in zip(conv.events, by_polygon, strict=True) if p is None]
    # Measured, not assumed: every point inside a polygon agrees with its column value; the
    # data README's one point outside every polygon still carries a neighbourhood value.
    assert all(col == poly for col, poly in inside)
    assert len(inside) + len(outside) == 11_276
    assert len(outside) <= 1 and all(e.community_id for e in outside)


def test_polygon_assignment_when_no_column() -> None:
    data = json.loads(json.dumps(_mapping_dict(SFPD_MAPPING)))
    del data["community"]
    conv = convert_rows(sfpd_rows()[:2000], parse_mapping(data), communities=sf_index())
    by_column = convert_rows(sfpd_rows()[:2000], load_mapping(SFPD_MAPPING)).events
    assigned = [e.community_id for e in conv.events]
    assert sum(c is None for c in assigned) == conv.unassigned
    agree = sum(a == b.community_id for a, b in zip(assigned, by_column, strict=True))
    assert agree == len(assigned) - conv.unassigned


def test_sffd_point_column_and_null_values() -> None:
    mapping = load_mapping(SFFD_MAPPING)
    with open_csv(SFFD, mapping) as (_, rows):
        conv = convert_rows(list(rows), mapping, communities=sf_index())
    first = conv.events[0]
    assert lonlat(first) == (-122.428071912459, 37.7895840679362)
    assert first.category == "Fire" and first.event_type == "fire" and first.urgency == "Immediate"
    assert first.properties["call_number"] == "20110016"
    assert Counter(r.reason for r in conv.rejects) == {"missing time": len(conv.rejects)}
    assert len(conv.events) + len(conv.rejects) == 1000
    assert all(e.community_id != "None" for e in conv.events)  # "None" cells use the polygons


def _mapping_dict(path: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads(path.read_text())


# --- every field, on small synthetic rows ---------------------------------------------------

BASE: dict[str, object] = {
    "source": {"system": "unit", "id": "id", "reporter": "who"},
    "time": {"column": "t", "timezone": "America/Los_Angeles"},
    "location": {"lat": "lat", "lon": "lon"},
    "event": {
        "category": {"column": "cat", "default": "Other"},
        "severity": "Minor",
        "event_type": {"column": "type", "map": {"Arson": "fire"}, "default": "other"},
    },
    "properties": {"columns": ["Free Text", "CallNumber"]},
    "community": {"column": "hood"},
}


def _row(i: int, **cells: str) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "id": f"r{i}",
        "t": "2018-12-01T10:00:00",
        "lat": "37.77",
        "lon": "-122.42",
        "cat": "Fire",
        "type": "Arson",
        "hood": "Mission",
        "who": "",
        "Free Text": "x",
        "CallNumber": "7",
    }
    row.update(cells)
    return row


def _convert(rows: list[dict[str, str | None]], **sections: dict[str, object]) -> Conversion:
    data = json.loads(json.dumps(BASE))
    for name, values in sections.items():
        data[name].update(values)
    return RowConverter(parse_mapping(data), reporter_key=b"k" * 32).convert(rows)


def test_coordinate_rejects_have_reasons() -> None:
    rows = [
        _row(1, lat="", lon=""),
        _row(2, lat="abc"),
        _row(3, lat="nan"),
        _row(4, lon="inf"),
        _row(5, lat="91"),
        _row(6, lon="-181"),
        _row(7, lat="0", lon="0"),
        _row(8),
    ]
    conv = _convert(rows)
    assert [(r.row, r.reason) for r in conv.rejects] == [
        (1, "missing coordinates"),
        (2, "unparsable coordinates"),
        (3, "non-finite coordinates"),
        (4, "non-finite coordinates"),
        (5, "coordinates out of range"),
        (6, "coordinates out of range"),
        (7, "coordinates at 0,0"),
    ]
    assert len(conv.events) == 1


def test_time_rejects_offsets_and_iso_default() -> None:
    rows = [
        _row(1, t=""),
        _row(2, t="yesterday"),
        _row(3, t="2018-12-01T10:00:00+08:00"),
        _row(4, t="2018-12-01T10:00:00Z"),
        _row(5, t="2018-07-01 10:00"),
    ]
    conv = _convert(rows)
    assert [(r.row, r.reason) for r in conv.rejects] == [
        (1, "missing time"),
        (2, "unparsable time"),
    ]
    wire = [json.loads(e.to_json())["observed_at"] for e in conv.events]
    assert wire == [
        "2018-12-01T10:00:00+08:00",
        "2018-12-01T10:00:00Z",
        "2018-07-01T10:00:00-07:00",
    ]


def test_time_without_offset_or_timezone_is_rejected() -> None:
    conv = _convert([_row(1), _row(2, t="2018-12-01T10:00:00-05:00")], time={"timezone": None})
    assert [r.reason for r in conv.rejects] == ["time without offset and no [time] timezone"]
    assert len(conv.events) == 1


def test_dst_ambiguous_and_non_existent_times_use_fold_0() -> None:
    rows = [
        _row(1, t="2018/11/04 01:30:00 AM"),
        _row(2, t="2019/03/10 02:30:00 AM"),
        _row(3, t="2019/03/10 03:30:00 AM"),
    ]
    conv = _convert(rows, time={"format": "%Y/%m/%d %I:%M:%S %p"})
    assert conv.rejects == []
    wire = [json.loads(e.to_json())["observed_at"] for e in conv.events]
    # fold=0: the ambiguous 01:30 is the first one (PDT); the 02:30 of the gap keeps PST.
    assert wire == [
        "2018-11-04T01:30:00-07:00",
        "2019-03-10T02:30:00-08:00",
        "2019-03-10T03:30:00-07:00",
    ]
    assert conv.notes == {
        "ambiguous local time (DST), fold=0 used": 1,
        "non-existent local time (DST gap), fold=0 used": 1,
    }


def test_vocabulary_values() -> None:
    rows = [
        _row(1, cat="fire"),
        _row(2, cat="Spooky"),
        _row(3, cat=""),
        _row(4, type="Larceny Theft"),
        _row(5, type="4th Street!"),
        _row(6, type=""),
    ]
    conv = _convert(rows)
    assert [(r.row, r.reason) for r in conv.rejects] == [(2, "invalid category")]
    assert "'Spooky' is not one of Geo, Met" in conv.rejects[0].detail
    got = {e.properties["row_id"]: (e.category, e.event_type) for e in conv.events}
    assert got == {
        "r1": ("Fire", "fire"),
        "r3": ("Other", "fire"),
        "r4": ("Fire", "larceny_theft"),
        "r5": ("Fire", "other"),
        "r6": ("Fire", "other"),
    }


def test_unmapped_default_and_missing_without_default() -> None:
    spec = {"column": "cat", "map": {"Blaze": "Fire"}, "default": "Safety", "unmapped": "default"}
    conv = _convert([_row(1, cat="Blaze"), _row(2, cat="Fire")], event={"category": spec})
    assert [e.category for e in conv.events] == ["Fire", "Safety"]
    conv = _convert([_row(1, cat="")], event={"category": {"column": "cat"}})
    assert [r.reason for r in conv.rejects] == ["missing category"]


def test_duplicate_and_missing_row_ids() -> None:
    converter = RowConverter(parse_mapping(json.loads(json.dumps(BASE))), reporter_key=b"k")
    first = converter.convert([_row(1), _row(2), _row(1), _row(3, id="")])
    later = converter.convert([_row(2)], first_row=5)  # the next chunk of the same file
    assert [(r.row, r.reason) for r in first.rejects] == [
        (3, "duplicate row id"),
        (4, "missing row id"),
    ]
    assert "'r1' already on row 1" in first.rejects[0].detail
    assert [(r.row, r.reason) for r in later.rejects] == [(5, "duplicate row id")]


def test_properties_community_and_reporter_pseudonym() -> None:
    conv = _convert(
        [
            _row(1, who="Alice Example"),
            _row(2, who="Alice Example"),
            _row(3, hood=""),
            _row(4, **{"Free Text": ""}),
        ]
    )
    events = {e.properties["row_id"]: e for e in conv.events}
    assert events["r1"].properties == {"row_id": "r1", "free_text": "x", "call_number": "7"}
    assert "free_text" not in events["r4"].properties
    assert events["r1"].community_id == "Mission" and events["r3"].community_id is None
    assert conv.unassigned == 1  # no column value and no polygons given
    pseudo = events["r1"].source.reporter
    assert pseudo and pseudo.startswith("hmac-sha256:") and pseudo == events["r2"].source.reporter
    assert events["r3"].source.reporter is None
    assert b"Alice" not in b"".join(e.to_json() for e in conv.events)


def test_snake_case() -> None:
    assert [snake_case(c) for c in ("Incident ID", "CallNumber", "RowID", "Delay (min)", "x")] == [
        "incident_id",
        "call_number",
        "row_id",
        "delay_min",
        "x",
    ]


# --- coordinate systems ---------------------------------------------------------------------


def test_gcj02_round_trip_in_shanghai() -> None:
    lon, lat = 121.4737, 31.2304  # People's Square, WGS84
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert metres(lon, lat, glon, glat) > 100  # the obfuscation is real
    conv = _convert(
        [_row(1, lon=repr(glon), lat=repr(glat), hood="Huangpu")], location={"crs": "GCJ-02"}
    )
    back = lonlat(conv.events[0])
    assert metres(lon, lat, back[0], back[1]) < 0.5


def utm_forward(lon: float, lat: float, zone: int) -> tuple[float, float]:
    """WGS84 -> UTM north (Krüger series to n^3, as in Karney 2011): independent of PROJ."""
    a, f, k0 = 6378137.0, 1 / 298.257223563, 0.9996
    n = f / (2 - f)
    big_a = a / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    alpha = (n / 2 - 2 * n**2 / 3 + 5 * n**3 / 16, 13 * n**2 / 48 - 3 * n**3 / 5, 61 * n**3 / 240)
    phi, dlam = math.radians(lat), math.radians(lon - (zone * 6 - 183))
    c = 2 * math.sqrt(n) / (1 + n)
    t = math.sinh(math.atanh(math.sin(phi)) - c * math.atanh(c * math.sin(phi)))
    xi, eta = math.atan2(t, math.cos(dlam)), math.atanh(math.sin(dlam) / math.sqrt(1 + t * t))
    east = eta + sum(
        al * math.cos(2 * j * xi) * math.sinh(2 * j * eta) for j, al in enumerate(alpha, 1)
    )
    north = xi + sum(
        al * math.sin(2 * j * xi) * math.cosh(2 * j * eta) for j, al in enumerate(alpha, 1)
    )
    return 500_000 + k0 * big_a * east, k0 * big_a * north


def test_utm_10n_easting_northing_in_san_francisco() -> None:
    lon, lat = -122.4193, 37.7793  # City Hall
    east, north = utm_forward(lon, lat, 10)
    assert 550_000 < east < 552_000 and 4_181_000 < north < 4_182_000  # sanity: SF in zone 10
    conv = _convert(
        [_row(1, lon=f"{east:.3f}", lat=f"{north:.3f}")], location={"crs": "EPSG:32610"}
    )
    got = lonlat(conv.events[0])
    assert metres(lon, lat, got[0], got[1]) < 1.0


# --- against the real broker ----------------------------------------------------------------


def _slice(tmp_path: Path, start: int, stop: int, name: str = "slice.csv") -> Path:
    path = tmp_path / name
    with SFPD.open(newline="", encoding="utf-8") as src, path.open("w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if start <= i < stop:
                writer.writerow(row)
    return path


def _consume(settings: EventLog, expected: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = KafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1500,
    )
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = list(consumer)
            messages += batch
            if len(messages) >= expected and not batch:
                break
    finally:
        consumer.close()
    return messages


def test_run_publishes_keys_valid_json_and_replays_same_ids(
    hub_settings: Settings, tmp_path: Path
) -> None:
    source = _slice(tmp_path, 0, 1500)
    mapping = load_mapping(SFPD_MAPPING)
    settings = ConnectorSettings(
        kafka_bootstrap=hub_settings.kafka_bootstrap,
        events_topic=hub_settings.events_topic,
        tile_zoom=hub_settings.tile_zoom,
        state_dir=tmp_path / "state",
    )
    sent_after_ms = time.time() * 1000 - 1000
    progress: list[int] = []
    report = run_csv(
        source,
        mapping,
        settings,
        communities=sf_index(),
        rejects_path=tmp_path / "rejects.csv",
        on_progress=progress.append,
    )
    assert report.delivered and report.rows_read == 1500 == progress[-1]
    assert report.rejected == 37 and report.reasons == {"missing coordinates": 37}
    assert report.rows_read == report.events_produced + report.rejected
    assert (settings.state_dir / "outbox" / "sfpd-incidents.sqlite").exists()

    messages = _consume(settings, report.events_produced)
    assert len(messages) == report.events_produced == 1463
    events = [parse_event(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        lon, lat = lonlat(event)
        assert message.key == tile_key(lon, lat, settings.tile_zoom)
        assert message.timestamp >= sent_after_ms  # stamped at send, not observed_at (2018)
    ids = {e.event_id for e in events}
    assert len(ids) == 1463

    with (tmp_path / "rejects.csv").open(newline="") as f:
        rejected = list(csv.DictReader(f))
    assert len(rejected) == 37 and {r["_reason"] for r in rejected} == {"missing coordinates"}
    assert rejected[0]["Row ID"] and int(rejected[0]["_row"]) == 142  # data row 142: line 143

    again = run_csv(source, mapping, settings, communities=sf_index())
    assert again.delivered and again.events_produced == 1463 and again.earlier_delivered == 0
    replayed = _consume(settings, 2 * 1463)
    assert len(replayed) == 2 * 1463
    assert {parse_event(m.value).event_id for m in replayed} == ids  # no new distinct ids


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    lines = result.stdout.strip().splitlines()
    return result.exit_code, (json.loads(lines[-1]) if lines else {})


@pytest.fixture
def cli_env(hub_settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        "HUB_KAFKA_BOOTSTRAP": hub_settings.kafka_bootstrap,
        "HUB_EVENTS_TOPIC": hub_settings.events_topic,
        "HUB_DATABASE_URL": hub_settings.database_url,
        "HUB_STATE_DIR": str(tmp_path / "state"),
    }


def test_outbox_keeps_events_while_broker_is_down(
    hub_settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    first, second = _slice(tmp_path, 0, 400, "a.csv"), _slice(tmp_path, 400, 700, "b.csv")
    outbox = tmp_path / "outbox.sqlite"
    args = [
        "connector",
        "run",
        "csv",
        "--mapping",
        str(SFPD_MAPPING),
        "--outbox",
        str(outbox),
        "--communities",
        str(HOODS),
        "--id-field",
        "nhood",
        "--json",
    ]
    down = {**cli_env, "HUB_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}  # nobody listens

    started = time.monotonic()
    code, report = _cli([*args, "--max-wait", "1", str(first)], down)
    assert code == 1 and time.monotonic() - started < 15
    assert report["delivered"] is False and report["events_produced"] == 0
    pending = report["pending"]
    assert isinstance(pending, int) and pending == 400 - report["rejected"] > 0
    code, again = _cli([*args, "--max-wait", "1", str(first)], down)  # retried while still down
    assert code == 1 and again["pending"] == pending  # replaced in the outbox, not doubled

    code, report = _cli([*args, str(second)], cli_env)
    assert code == 0 and report["delivered"] is True and report["pending"] == 0
    assert report["earlier_delivered"] == pending  # the first file's events went out first
    assert report["rows_read"] == report["events_produced"] + report["rejected"]

    messages = _consume(hub_settings, pending + report["events_produced"])
    ids = [parse_event(m.value).event_id for m in messages]
    assert len(ids) == len(set(ids)) == pending + report["events_produced"]
    first_ids = {event_id_for("sfpd-incidents", r["Row ID"] or "") for r in _rows(first)}
    by_partition: dict[int, list[bool]] = {}
    for m, eid in sorted(zip(messages, ids, strict=True), key=lambda p: p[0].offset):
        by_partition.setdefault(m.partition, []).append(eid in first_ids)
    for flags in by_partition.values():  # per partition, the earlier file's events come first
        assert flags == sorted(flags, reverse=True)

    code, rerun = _cli([*args, str(first)], cli_env)  # a real replay: sent again, same ids
    assert code == 0 and rerun["events_produced"] == pending and rerun["earlier_delivered"] == 0


def test_recovered_run_of_the_same_file_sends_each_event_once(
    hub_settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    source = _slice(tmp_path, 0, 500)
    args = [
        "connector",
        "run",
        "csv",
        str(source),
        "--mapping",
        str(SFPD_MAPPING),
        "--communities",
        str(HOODS),
        "--id-field",
        "nhood",
        "--json",
    ]
    down = {**cli_env, "HUB_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    code, report = _cli([*args, "--max-wait", "0.5"], down)
    assert code == 1 and report["pending"] == report["rows_read"] - report["rejected"]

    code, report = _cli(args, cli_env)  # default outbox under HUB_STATE_DIR, pending first
    assert code == 0 and report["earlier_delivered"] == 0 and report["pending"] == 0
    assert report["rows_read"] == report["events_produced"] + report["rejected"]
    messages = _consume(hub_settings, report["events_produced"])
    ids = [parse_event(m.value).event_id for m in messages]
    assert len(ids) == len(set(ids)) == report["events_produced"]  # none lost, none doubled


def _rows(path: Path) -> list[dict[str, str | None]]:
    with open_csv(path, load_mapping(SFPD_MAPPING)) as (_, rows):
        return list(rows)


def test_fusion_assigns_the_community_a_connector_leaves_open(
    hub_settings: Settings, sf_communities: list[str], tmp_path: Path
) -> None:
    # Without polygons a connector sends rows that name no community as they are; fusion fills
    # the community from the hub's polygons, as the connector would have from the same file.
    data = json.loads(json.dumps(_mapping_dict(SFPD_MAPPING)))
    del data["community"]
    mapping = parse_mapping(data)
    source = _slice(tmp_path, 0, 300)
    settings = ConnectorSettings(
        kafka_bootstrap=hub_settings.kafka_bootstrap,
        events_topic=hub_settings.events_topic,
        tile_zoom=hub_settings.tile_zoom,
        state_dir=tmp_path / "state",
    )
    report = run_csv(source, mapping, settings)
    assert report.delivered and report.unassigned == report.events_produced > 250
    local = convert_rows(_rows(source), mapping, communities=sf_index()).events
    expected = {str(e.event_id): e.community_id for e in local if e.community_id}
    assert len(expected) >= report.events_produced - 1

    def consumed() -> bool:
        return fusion_stats(hub_settings)["consumed"] >= report.events_produced

    with running_worker(hub_settings):
        wait_until(consumed, 60, "the connector's events consumed")
    with connect(hub_settings) as conn:
        rows = conn.execute(
            "SELECT event_id::text, community_id FROM event WHERE event_id = ANY(%s::uuid[])",
            (list(expected),),
        ).fetchall()
    assert dict(rows) == expected


def test_cli_exit_codes_for_unusable_input(cli_env: dict[str, str], tmp_path: Path) -> None:
    base = ["connector", "run", "csv", "--mapping", str(SFPD_MAPPING)]
    code, _ = _cli([*base, str(tmp_path / "absent.csv")], cli_env)
    assert code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nsystem = "x"\n')
    code, _ = _cli(["connector", "run", "csv", str(SFFD), "--mapping", str(bad)], cli_env)
    assert code == 2
    code, _ = _cli([*base, str(SFFD)], cli_env)  # the SFPD mapping does not fit the SFFD file
    assert code == 2
    code, _ = _cli(["connector", "run", "xml", str(SFFD), "--mapping", str(SFPD_MAPPING)], cli_env)
    assert code == 2


def test_outbox_belongs_to_one_process(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite"), pytest.raises(OutboxBusy, match="own --outbox"):
        Outbox(tmp_path / "o.sqlite")
    with Outbox(tmp_path / "o.sqlite") as outbox:  # released on close
        records = outbox.put([(uuid.uuid4(), b"k", b"v"), (uuid.uuid4(), b"k", b"w")])
        assert [r.seq for r in records] == [1, 2] and outbox.count() == 2
        outbox.acknowledge([1])
        assert outbox.count() == 1 and [r.value for r in outbox.pending(10)] == [b"w"]


def test_mapping_type_is_exported() -> None:
    assert Mapping is type(load_mapping(SFPD_MAPPING))
