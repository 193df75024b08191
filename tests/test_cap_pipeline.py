"""CAP in, end to end: every shared sample through ``hub connector run cap`` into the real
broker (reported and rejected as the acceptance list says), and CAP alerts placed in San
Francisco through the broker into fusion, where they land as incidents: an Update joins what
it updates, a Cancel cancels, an exercise stays in the exercise picture."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.cap.connector import CapRun
from connectors.cap.convert import cap_event_id
from connectors.run import RunOptions
from connectors.settings import ConnectorSettings
from hub.cli.main import app
from hub.settings import Settings, get_settings
from hub.store.db import connect
from schemas.event import parse_event
from tests.cap_helpers import CAP_DATA, alert_xml, area_xml, info_xml, mapping, recording_server
from tests.fusion_helpers import consume_all, fusion_stats, running_worker, wait_until
from tests.test_cap_connector import EXPECTED, SHIPPED
from tests.test_incidents import incidents_of


@pytest.fixture
def cli_env(hub_settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        "HUB_KAFKA_BOOTSTRAP": hub_settings.kafka_bootstrap,
        "HUB_EVENTS_TOPIC": hub_settings.events_topic,
        "HUB_STATE_DIR": str(tmp_path / "state"),
    }


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    lines = result.stdout.strip().splitlines()
    return result.exit_code, (json.loads(lines[-1]) if lines else {})


def test_every_sample_through_the_cli_into_the_broker(
    hub_settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in EXPECTED:
        shutil.copy(CAP_DATA / name, drop / name.replace("/", "__"))
    rejects = tmp_path / "rejects.csv"
    args = ["connector", "run", "cap", str(drop), "--mapping", str(SHIPPED), "--json"]
    code, report = _cli([*args, "--rejects", str(rejects)], cli_env)
    assert code == 0, report
    outcomes = [o for per_file in EXPECTED.values() for o in per_file]
    expected_rejects = sum(not o.startswith("event") for o in outcomes)
    assert report["rejected"] == expected_rejects
    # bushfire_valid and bushfire_invalid share five alerts: each is one event.
    assert report["notes"]["same alert twice in this run"] == 5
    assert report["events_produced"] == len(outcomes) - expected_rejects - 5
    assert report["rows_read"] == report["events_produced"] + report["rejected"]
    with rejects.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected_rejects and all(r["_reason"] for r in rows)
    assert {r["document"] for r in rows if "DOCTYPE" in r["_reason"]} == {
        str(drop / "hostile__xee.cap"),
        str(drop / "hostile__xee.atom"),
    }
    messages = consume_all(hub_settings, hub_settings.events_topic, report["events_produced"])
    events = [parse_event(m.value) for m in messages]
    assert len({e.event_id for e in events}) == report["events_produced"] == len(events)
    assert {e.source.connector for e in events} == {"cap"}

    code, again = _cli(args, cli_env)  # the folder's files were read: nothing new
    assert code == 0 and again["rows_read"] == 0 and again["events_produced"] == 0


def test_cap_alerts_land_as_incidents(
    hub_settings: Settings, sf_communities: list[str], tmp_path: Path
) -> None:
    settings = hub_settings.model_copy(update={"fusion_incidents": True})
    sent = "2026-12-01T10:00:00-08:00"
    ref = f"test@hub.example,{{}},{sent}"
    mission_circle = area_xml(circle="37.7610,-122.4190 0.3")
    bernal = area_xml("Bernal Heights", circle="37.7390,-122.4160 0.2")
    docs = {
        "1-fire.cap": alert_xml("fire-1", sent=sent),
        "2-update.cap": alert_xml(
            "fire-2",
            sent="2026-12-01T10:20:00-08:00",
            msg_type="Update",
            references=ref.format("fire-1"),
            infos=[info_xml(area=mission_circle, severity="Extreme")],
        ),
        "3-gas.cap": alert_xml(
            "gas-1", sent=sent, infos=[info_xml(category="Safety", event="Gas Leak", area=bernal)]
        ),
        "4-cancel.cap": alert_xml(
            "gas-2",
            sent="2026-12-01T10:30:00-08:00",
            msg_type="Cancel",
            references=ref.format("gas-1"),
            infos=[info_xml(category="Safety", event="Gas Leak", area=bernal)],
        ),
        "5-drill.cap": alert_xml(
            "drill-1",
            sent=sent,
            status="Exercise",
            infos=[
                info_xml(event="Flood", category="Met", area=area_xml(geocode=("SFDEM", "ZONE-7")))
            ],
        ),
    }
    drop = tmp_path / "drop"
    drop.mkdir()
    cancel = docs.pop("4-cancel.cap")
    for name, xml in docs.items():
        (drop / name).write_text(xml)
    cap_mapping = mapping(geocode={"SFDEM": {"ZONE-7": {"lon": -122.4058, "lat": 37.7946}}})
    connector_settings = ConnectorSettings(
        kafka_bootstrap=settings.kafka_bootstrap,
        events_topic=settings.events_topic,
        state_dir=tmp_path / "state",
    )
    run = CapRun(cap_mapping, connector_settings, RunOptions())
    before = fusion_stats(settings)["consumed"]
    report = run.run(drop)
    assert report.delivered and report.events_produced == 4 and report.rejected == 0
    with running_worker(settings):
        wait_until(lambda: fusion_stats(settings)["consumed"] == before + 4, 60, "consumed")
        # The cancel comes later, as cancels do: the folder's next run reads only it.
        (drop / "4-cancel.cap").write_text(cancel)
        again = run.run(drop)
        assert again.rows_read == again.events_produced == 1
        wait_until(lambda: fusion_stats(settings)["consumed"] == before + 5, 60, "consumed")

    ids = {
        k: str(cap_event_id("test@hub.example", k))
        for k in ("fire-1", "fire-2", "gas-1", "drill-1")
    }
    found = incidents_of(settings, [{"event_id": i} for i in ids.values()])
    assert found[ids["fire-1"]]["id"] == found[ids["fire-2"]]["id"]  # the update joins
    assert found[ids["fire-1"]]["communities"] == ["Mission"]
    assert found[ids["gas-1"]]["cancelled"]
    assert found[ids["drill-1"]]["status"] == "exercise"
    assert found[ids["fire-1"]]["alerts"] == 2
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT event_id::text, kind, community_id FROM event WHERE event_id = ANY(%s::uuid[])",
            (list(ids.values()),),
        ).fetchall()
    kinds = {r[0]: (r[1], r[2]) for r in rows}
    assert kinds[ids["gas-1"]] == ("alert", "Bernal Heights")
    assert kinds[ids["drill-1"]][1] == "Chinatown"


def test_feed_url_through_the_cli(hub_settings: Settings, cli_env: dict[str, str]) -> None:
    atom = (CAP_DATA / "feeds" / "canada_signed.atom").read_bytes()  # one embedded alert
    with recording_server() as server:
        server.routes["/naads.atom"] = (200, {"ETag": '"n1"'}, atom)
        args = ["connector", "run", "cap", f"{server.url}/naads.atom", "-m", str(SHIPPED), "--json"]
        code, report = _cli(args, cli_env)
        assert code == 0 and report["events_produced"] == 1 and report["rejected"] == 0
        code, again = _cli(args, cli_env)  # unchanged: the conditional GET answers 304
        assert code == 0 and again["rows_read"] == 0
        assert [h[1].get("If-None-Match") for h in server.hits] == [None, '"n1"']
        code, _ = _cli(
            ["connector", "run", "cap", f"{server.url}/gone", "-m", str(SHIPPED)], cli_env
        )
    assert code == 2  # HTTP 404: the source cannot be read
    single = ["connector", "run", "cap", str(CAP_DATA / "valid" / "thunderstorm.cap")]
    code, report = _cli([*single, "-m", str(SHIPPED), "--json"], cli_env)
    assert code == 0 and report["events_produced"] == 1  # one file: read without a cursor
    messages = consume_all(hub_settings, hub_settings.events_topic, 2)
    events = sorted((parse_event(m.value) for m in messages), key=lambda e: e.event_type)
    assert [e.event_type for e in events] == ["severe_thunderstorm", "snowfall"]
    assert events[0].geometry.type == "Polygon" and events[0].severity == "Severe"
    assert events[1].properties["cap"]["found_in"] == "feed alert 1"
