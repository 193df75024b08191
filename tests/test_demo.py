"""`hub demo --once --json` end to end on its own stack and database: the counts add up against
the real CSV, a second run stores nothing new, and nothing it started is left running."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hub.settings import Settings
from hub.stack.broker import free_port, port_open
from hub.store.migrate import drop_database
from tests.conftest import DATA

pytestmark = pytest.mark.slow


def _expected() -> tuple[int, int, Counter[str]]:
    with (DATA / "sfpd_incident_reports_2018-12.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    located = [r for r in rows if r["Latitude"] and r["Longitude"]]
    return len(rows), len(rows) - len(located), Counter(r["Analysis Neighborhood"] for r in located)


def _run_demo(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--once", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def _demo_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, int], str]:
    """A stack of its own: state dir, free ports, a throw-away database."""
    base = os.environ.get(
        "HUB_TEST_DATABASE_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
    )
    database_url = f"{base}/hub_test_demo_{uuid.uuid4().hex[:8]}"
    ports = {"broker": free_port(), "api": free_port(), "metrics": free_port()}
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_STATE_DIR": str(tmp_path / ".hub"),
        "HUB_BROKER_PORT": str(ports["broker"]),
        "HUB_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['broker']}",
        "HUB_API_PORT": str(ports["api"]),
        "HUB_FUSION_METRICS_PORT": str(ports["metrics"]),
    }
    return env, ports, database_url


def test_demo_once_json_counts_add_up_and_rerun_stores_nothing(tmp_path: Path) -> None:
    env, ports, database_url = _demo_env(tmp_path)
    rows, without_coordinates, per_neighbourhood = _expected()
    try:
        first = _run_demo(env, tmp_path)
        assert first["rows_read"] == rows
        assert first["rejected_by_connector"] == without_coordinates
        assert first["events_produced"] == rows - without_coordinates
        assert first["events_stored"] == first["events_produced"]
        assert first["duplicates_dropped"] == 0 and first["dlq"] == 0
        assert first["per_community"] == dict(per_neighbourhood)
        assert set(first["lag_ms"]) == {"p50", "p95", "p99"}
        assert 0 < first["lag_ms"]["p50"] <= first["lag_ms"]["p99"]
        seen = {c["kind"]: c for c in first["clients"]}
        stored = first["events_stored"]
        assert seen["admin"]["events"] == seen["analyst"]["events"] == stored
        assert seen["analyst"]["with_reporter"] == 0
        # own events and the neighbours' near its boundary; never the whole city
        assert per_neighbourhood["Mission"] < seen["community"]["events"] < stored
        assert 0 < seen["department"]["events"] < stored
        assert all(c["client_id"] in c["curl"] for c in first["clients"])

        second = _run_demo(env, tmp_path)
        assert second["events_produced"] == first["events_produced"]
        assert second["events_stored"] == 0
        assert second["duplicates_dropped"] == second["events_produced"]
        assert second["per_community"] == {}
    finally:
        drop_database(Settings(database_url=database_url))
    assert not any(port_open(p) for p in ports.values()), "the demo left a service running"
    assert not list((tmp_path / ".hub" / "run").glob("*.pid"))


def test_demo_that_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    """The API port is taken: ``up`` fails after starting the broker and fusion, and the demo
    must not leave those running."""
    env, ports, database_url = _demo_env(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", ports["api"]))
    squatter.listen()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hub", "demo", "--once"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode != 0
        assert "api" in done.stderr + done.stdout
    finally:
        squatter.close()
        drop_database(Settings(database_url=database_url))
    assert not port_open(ports["broker"]) and not port_open(ports["metrics"])
    assert not list((tmp_path / ".hub" / "run").glob("*.pid"))
