"""The sql connector kind against the real MariaDB (127.0.0.1:3306, root) and the real broker:
a database of its own per test, filled with real SFPD rows; the first run sends all, a second
exactly the inserted and changed rows, ties on the cursor lose nothing, and bad queries,
mappings and rows are reported with reasons."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest
from typer.testing import CliRunner

from connectors.csv_source import SourceError, event_id_for
from connectors.cursor import CursorStore
from connectors.mapping import MappingError, load_mapping, parse_mapping
from connectors.run import RunOptions
from connectors.settings import ConnectorSettings
from connectors.sql_connector import SqlConnector
from hub.cli.main import app
from hub.settings import Settings, get_settings
from hub.stack.broker import free_port
from schemas.event import Event, parse_event
from tests.fusion_helpers import consume_all

ROOT = Path(__file__).resolve().parents[1]
SFPD = ROOT / "data" / "sf" / "sfpd_incident_reports_2018-12.csv"
MAPPING = ROOT / "config" / "mappings" / "community-reports-sql.toml"
T0 = datetime(2026, 1, 5, 9, 0, 0)

_TABLE = """
CREATE TABLE resident_report (
    report_id     BIGINT PRIMARY KEY,
    reported_at   DATETIME NOT NULL,
    reported_by   VARCHAR(64),
    latitude      DOUBLE,
    longitude     DOUBLE,
    category      VARCHAR(100),
    description   VARCHAR(200),
    neighbourhood VARCHAR(100),
    updated_at    DATETIME(6) NOT NULL
)
"""


def _sfpd(start: int, stop: int) -> list[tuple[Any, ...]]:
    """Real SFPD rows as a resident-report table holds them; three rows share each
    ``updated_at`` (ties on the cursor)."""
    out = []
    with SFPD.open(newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if start <= i < stop:
                when = datetime.strptime(r["Incident Datetime"], "%Y/%m/%d %I:%M:%S %p")
                out.append(
                    (
                        int(r["Row ID"]),
                        when,
                        f"resident{i % 5}",
                        float(r["Latitude"]) if r["Latitude"] else None,
                        float(r["Longitude"]) if r["Longitude"] else None,
                        r["Incident Category"],
                        r["Incident Description"],
                        r["Analysis Neighborhood"] or None,
                        T0 + timedelta(seconds=i // 3),
                    )
                )
    return out


def _insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO resident_report VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
        )


@pytest.fixture
def community_db() -> Iterator[tuple[str, Any]]:
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE {name}")
    conn = pymysql.connect(host="127.0.0.1", user="root", database=name, autocommit=True)
    try:
        conn.cursor().execute(_TABLE)
        _insert(conn, _sfpd(0, 200))
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}", conn
    finally:
        conn.close()
        admin.cursor().execute(f"DROP DATABASE {name}")
        admin.close()


def _settings(hub: Settings, state: Path) -> ConnectorSettings:
    return ConnectorSettings(
        kafka_bootstrap=hub.kafka_bootstrap,
        events_topic=hub.events_topic,
        tile_zoom=hub.tile_zoom,
        state_dir=state,
        reporter_key="k" * 32,
    )


def _cli(args: list[str], settings: ConnectorSettings) -> tuple[int, dict[str, Any]]:
    env = {
        "HUB_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HUB_EVENTS_TOPIC": settings.events_topic,
        "HUB_STATE_DIR": str(settings.state_dir),
        "HUB_REPORTER_KEY": "k" * 32,
    }
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["connector", "run", "sql", *args], env=env)
    finally:
        get_settings.cache_clear()
    lines = result.stdout.strip().splitlines()
    return result.exit_code, (json.loads(lines[-1]) if lines else {})


def _sent(hub: Settings, expected: int) -> list[Event]:
    return [parse_event(m.value) for m in consume_all(hub, hub.events_topic, expected, 20)]


def test_first_run_sends_all_then_exactly_the_new_and_changed(
    hub_settings: Settings, tmp_path: Path, community_db: tuple[str, Any]
) -> None:
    url, conn = community_db
    settings = _settings(hub_settings, tmp_path / "state")
    code, first = _cli([url, "--mapping", str(MAPPING), "--json"], settings)
    assert code == 0 and first["rows_read"] == 200
    assert first["reasons"] == {"missing coordinates": first["rejected"]} and first["rejected"] > 0
    assert first["events_produced"] == 200 - first["rejected"]
    with CursorStore(settings.state_dir / "cursor" / "community-reports.sqlite") as store:
        assert store.rows() == first["events_produced"]
        (position,) = [store.position(n) for n in _names(store)]
        assert position == T0 + timedelta(seconds=199 // 3)  # the last row's, typed

    cur = conn.cursor()
    last = T0 + timedelta(seconds=199 // 3)
    later = last + timedelta(minutes=5)
    new = _sfpd(200, 203)
    _insert(conn, [(*r[:8], later) for r in new])  # 3 new rows
    tie = _sfpd(203, 204)[0]
    _insert(conn, [(*tie[:8], last)])  # committed late, at the saved cursor value itself
    changed = [r for r in _sfpd(0, 200) if r[3] is not None][:2]
    for r in changed:  # 2 real changes: a resident corrects the category
        cur.execute(
            "UPDATE resident_report SET category = 'Arson', updated_at = %s WHERE report_id = %s",
            (later, r[0]),
        )
    touched = [r for r in _sfpd(0, 200) if r[3] is not None][5]
    cur.execute(  # touched, nothing the mapping reads changed: not sent again
        "UPDATE resident_report SET updated_at = %s WHERE report_id = %s", (later, touched[0])
    )

    connector = SqlConnector(load_mapping(MAPPING), settings)
    second = connector.run(url, RunOptions())
    assert second.delivered
    assert second.events_produced == 3 + 1 + 2 and second.changed == 2
    assert second.rows_read == second.events_produced + second.rejected + second.unchanged
    assert second.unchanged >= 1  # the touched row (and the rows tied at the old cursor)

    sent = _sent(hub_settings, first["events_produced"] + 6)
    assert len(sent) == len({e.event_id for e in sent}) == first["events_produced"] + 6
    by_row: dict[str, list[Event]] = {}
    for e in sent:
        by_row.setdefault(e.properties["row_id"], []).append(e)
    for r in [*new, tie]:  # new rows: the CSV rule's id, no refs
        (event,) = by_row[str(r[0])]
        assert event.event_id == event_id_for("community-reports", str(r[0])) and not event.refs
    for r in changed:  # a change: a new event that refs the first
        original, update = by_row[str(r[0])]
        assert update.refs == [original.event_id] and update.event_type == "fire"
        assert update.category == "Fire" and original.event_type != "fire"
    assert len(by_row[str(touched[0])]) == 1
    assert all(e.source.connector == "sql" for e in sent)
    pseudonyms = {e.source.reporter for e in sent}
    assert len(pseudonyms) == 5 and all(p and p.startswith("hmac-sha256:") for p in pseudonyms)

    third = connector.run(url, RunOptions())  # nothing new: nothing sent
    assert third.events_produced == 0 and third.rows_read == third.unchanged + third.rejected


def _names(store: CursorStore) -> list[str]:
    return [r[0] for r in store._db.execute("SELECT source FROM position")]


def test_a_run_stopped_inside_a_tie_loses_nothing(
    hub_settings: Settings, tmp_path: Path, community_db: tuple[str, Any]
) -> None:
    # Chunks of 4 rows with 3 rows per cursor value: the position saved after the first chunk
    # lies inside a tie (rows 3, 4 and 5 share it). The run dies there; the next one resumes
    # at that value (>=) and sends the tied row it had not reached, and nothing twice.
    url, _ = community_db
    settings = _settings(hub_settings, tmp_path / "state")
    connector = SqlConnector(load_mapping(MAPPING), settings)

    def die(rows: int) -> None:
        raise KeyboardInterrupt(f"stopped after {rows} rows")

    with pytest.raises(KeyboardInterrupt):
        connector.run(url, RunOptions(chunk_rows=4, on_progress=die))
    with CursorStore(settings.state_dir / "cursor" / "community-reports.sqlite") as store:
        assert [store.position(n) for n in _names(store)] == [T0 + timedelta(seconds=1)]
    resumed = connector.run(url, RunOptions(chunk_rows=4))
    assert resumed.delivered and resumed.rows_read == 200 - 3  # from the tie on
    rows = _sfpd(0, 200)
    placed = {str(r[0]) for r in rows if r[3] is not None}
    sent = _sent(hub_settings, len(placed))
    assert {e.properties["row_id"] for e in sent} == placed  # none lost
    assert len({e.event_id for e in sent}) == len(placed)  # none with two ids


def test_bad_queries_and_mappings_are_reported(
    hub_settings: Settings, tmp_path: Path, community_db: tuple[str, Any]
) -> None:
    url, _ = community_db
    settings = _settings(hub_settings, tmp_path / "state")
    data = _mapping_dict()
    data["sql"]["query"] = "SELECT * FROM no_such_table"
    with pytest.raises(SourceError, match=r"the query failed.*no_such_table"):
        SqlConnector(parse_mapping(data), settings).run(url, RunOptions())
    data["sql"]["query"] = "SELECT report_id, reported_at, reported_by, latitude, longitude, "
    data["sql"]["query"] += "category, description, neighbourhood FROM resident_report"
    with pytest.raises(SourceError, match=r"Unknown column.*updated_at.*\(\[sql\] cursor_column\)"):
        SqlConnector(parse_mapping(data), settings).run(url, RunOptions())
    code, _ = _cli(["mysql+pymysql://root@127.0.0.1:1/x", "--mapping", str(MAPPING)], settings)
    assert code == 2  # cannot connect: a clear error, exit 2
    data = _mapping_dict()
    data["sql"]["cursor_colum"] = data["sql"].pop("cursor_column")
    with pytest.raises(MappingError, match="did you mean 'cursor_column'"):
        parse_mapping(data)
    data["sql"] = {"query": "SELECT 1; DROP TABLE resident_report", "cursor_column": "x"}
    with pytest.raises(MappingError, match="one statement only"):
        parse_mapping(data)


def _mapping_dict() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(MAPPING.read_text())


def test_rows_read_while_the_broker_is_down_go_out_on_the_next_run(
    hub_settings: Settings, tmp_path: Path, community_db: tuple[str, Any]
) -> None:
    # The cursor moves once the events are durable in the outbox, not once Kafka has them:
    # the next run sends what the outbox kept first, and reads nothing twice.
    url, conn = community_db
    live = _settings(hub_settings, tmp_path / "state")
    down = live.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    connector = SqlConnector(load_mapping(MAPPING), down)
    first = connector.run(url, RunOptions(max_wait=0.5))
    assert not first.delivered and first.pending == 200 - first.rejected
    _insert(conn, _sfpd(200, 202))  # arrives while the broker is still down
    _insert(conn, [(*r[:8], T0 + timedelta(hours=1)) for r in _sfpd(202, 204)])
    back = SqlConnector(load_mapping(MAPPING), live).run(url, RunOptions())
    assert back.delivered and back.earlier_delivered == first.pending
    assert back.events_produced == 2 + 2 - back.rejected
    sent = _sent(hub_settings, first.pending + back.events_produced)
    assert len(sent) == len({e.event_id for e in sent}) == first.pending + back.events_produced
