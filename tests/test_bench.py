"""Smoke run of the real ``hub bench ingest`` (small, not timed): it sets up its own broker and
database, drains the workload in both modes (skeleton and picture) with the fusion worker as a
subprocess, runs the paced phases, follows reports into their incidents through a real API
server, reports consistent figures, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.bench.ingest import Block, plan
from hub.bench.producers import ProducerJob
from hub.bench.visibility import Sampler
from hub.bench.workload import police_type, prefill, sf_incidents, stream, stream_id
from hub.settings import Settings
from tests.bench_helpers import SERVER, assert_database_dropped, assert_results_written

ROOT = Path(__file__).resolve().parents[1]


def test_prefill_and_streams_are_distinct_per_seed_and_part() -> None:
    w = prefill(1000, seed=1, connector="bench-x")
    assert len(w.messages) == 1000 and w.duplicates == 20 and len(w.valid_ids) == 980
    ids = {json.loads(value)["event_id"] for _, value in w.messages}
    assert ids == w.valid_ids
    assert json.loads(w.messages[0][1])["source"]["connector"] == "bench-x"

    def first_ids(seed: int, part: int) -> set[str]:
        events = stream(seed, connector="c", part=part)
        return {json.loads(next(events)[1])["event_id"] for _ in range(100)}

    assert len(first_ids(1, 0) | first_ids(1, 1) | first_ids(2, 0)) == 300


def test_stream_ids_can_be_followed_from_the_count_alone() -> None:
    events = stream(5, connector="c", part=2)
    ids = [json.loads(next(events)[1])["event_id"] for _ in range(50)]
    assert ids == [stream_id(5, "c", 2, i) for i in range(50)]
    sampler = Sampler(ProducerJob(Settings(), 5, "c", 2, 1.0, rate=100), every=20)
    assert sampler.new(0) == [] and sampler.new(1) == [ids[0]]
    assert sampler.new(21) == [ids[20]] and sampler.new(41) == [ids[40]]  # each id once
    assert sampler.new(50) == [] and sampler.next == 60


def test_streams_repeat_each_real_incident_typed_to_correlate() -> None:
    n = len(sf_incidents())
    events = stream(3)
    first = [json.loads(next(events)[1]) for _ in range(n + 1)]
    again, once = first[n], first[0]
    assert once["event_type"] == police_type(sf_incidents()[0].category) != "other"
    for key in ("event_type", "observed_at", "geometry"):
        assert again[key] == once[key]
    assert again["event_id"] != once["event_id"]
    assert police_type("Larceny Theft") == "larceny_theft" and police_type("?") == "other"


def test_plan_alternates_the_modes_and_ends_each_with_its_paced_phases() -> None:
    both = ("skeleton", "picture")
    assert plan(both, 1) == [Block("skeleton", 1, True), Block("picture", 1, True)]
    assert plan(both, 3) == [
        Block("skeleton", 1, False),
        Block("picture", 1, False),
        Block("picture", 2, False),
        Block("skeleton", 2, False),
        Block("skeleton", 3, True),
        Block("picture", 3, True),
    ]
    assert plan(("picture", "skeleton"), 1)[0].mode == "skeleton"  # the order is the bench's
    assert plan(("picture",), 2) == [Block("picture", 1, False), Block("picture", 2, True)]


def _run_bench(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = dict(
        os.environ,
        # Same server as the other tests; the bench makes (and drops) a database of its own.
        HUB_DATABASE_URL=f"{SERVER}/postgres",
        # Small polls: 3,000 events then take several batches, so the drain has a steady part.
        HUB_FUSION_MAX_POLL_RECORDS="500",
    )
    args = ["--events", "3000", "--rate", "500", "--lag-seconds", "3", "--sustained-seconds", "2"]
    args += ["--rounds", "1", "--sample-every", "10"]  # 150 of the 1,500 paced events followed
    args += ["--json", "--results-dir", str(results_dir)]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "ingest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=210,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(240)
def test_bench_ingest_smoke(tmp_path: Path) -> None:
    proc, result = _run_bench(tmp_path)
    assert "drain" in proc.stdout and "crc32c" in proc.stdout  # the table and the machine line
    assert "picture / skeleton" in proc.stdout and "incident via API" in proc.stdout

    assert result["events"] == 3000 and result["modes"] == ["skeleton", "picture"]
    assert result["checks_ok"] is True
    for mode in ("skeleton", "picture"):
        (drain,) = result["drain"][mode]  # one round
        assert result["drain_eps"][mode] == drain["steady_eps"] > 0 and drain["wall_eps"] > 0
        assert drain["stored"] + drain["duplicates"] == 3000 and drain["dlq"] == 0
        assert drain["stored"] == drain["distinct"] == drain["stored_in_db"] == 3000 - 60
        lag = result["lag"][mode]
        assert lag["stored"] == lag["sent"] > 0 and lag["ok"]
        p = result["lag_ms"][mode]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] and result["lag_rate_eps"][mode] > 0
    picture = result["drain"]["picture"][0]
    assert picture["members"] == picture["stored"] and picture["orphans"] == [0, 0]
    # (fewer events than real incidents: no repeats yet, so one incident per report at most)
    assert 0 < picture["incidents"] <= picture["stored"]
    ratio = result["drain_eps"]["picture"] / result["drain_eps"]["skeleton"]
    assert result["picture_ratio"] == pytest.approx(ratio, abs=1e-3)
    assert set(result["passed"]) == {
        "drain_eps",
        "sustained_eps",
        "lag_p99_ms",
        "picture_ratio",
        "visible_lag_p99_ms",
    }

    sustained = result["sustained"]
    assert sustained["stored"] == sustained["sent"] > 0 and sustained["send_errors"] == 0
    assert sustained["stored_in_window"] + sustained["backlog_at_stop"] == sustained["stored"]
    assert sustained["producer_eps"] > 0 and result["sustained_eps"] > 0

    visible = result["visible"]
    assert visible["followed"] == visible["stored"] == visible["visible"] >= 140
    assert visible["never_visible"] == visible["request_errors"] == 0 and visible["ok"]
    v = result["visible_lag_ms"]
    assert 0 < v["p50"] <= v["p95"] <= v["p99"] <= visible["max_ms"]
    assert visible["after_stored_p50_ms"] > 0  # no report is visible before it is stored

    assert_results_written(tmp_path, "ingest", result)

    # Nothing left behind: the throw-away database is gone.
    assert_database_dropped(result["settings"]["database"])
