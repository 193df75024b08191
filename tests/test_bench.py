"""Smoke run of the real ``hub bench ingest`` (small, not timed): it sets up its own broker and
database, runs the three phases with the fusion worker as a subprocess, reports consistent
figures, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.bench.workload import prefill, stream
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


def _run_bench(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = dict(
        os.environ,
        # Same server as the other tests; the bench makes (and drops) a database of its own.
        HUB_DATABASE_URL=f"{SERVER}/postgres",
        # Small polls: 3,000 events then take several batches, so the drain has a steady part.
        HUB_FUSION_MAX_POLL_RECORDS="500",
    )
    args = ["--events", "3000", "--rate", "500", "--lag-seconds", "3", "--sustained-seconds", "2"]
    args += ["--json", "--results-dir", str(results_dir)]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "ingest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(180)
def test_bench_ingest_smoke(tmp_path: Path) -> None:
    proc, result = _run_bench(tmp_path)
    assert "drain" in proc.stdout and "crc32c" in proc.stdout  # the table and the machine line

    assert result["events"] == 3000
    assert result["drain_eps"] > 0 and result["sustained_eps"] > 0
    lag = result["lag_ms"]
    assert 0 < lag["p50"] <= lag["p95"] <= lag["p99"]
    assert result["checks_ok"] is True

    drain = result["drain"]
    assert drain["steady_eps"] == result["drain_eps"] and drain["wall_eps"] > 0
    assert drain["stored"] + drain["duplicates"] == 3000 and drain["dlq"] == 0
    assert drain["stored"] == drain["distinct"] == drain["stored_in_db"] == 3000 - 60

    sustained = result["sustained"]
    assert sustained["stored"] == sustained["sent"] > 0 and sustained["send_errors"] == 0
    assert sustained["stored_in_window"] + sustained["backlog_at_stop"] == sustained["stored"]
    assert sustained["producer_eps"] > 0

    assert result["lag"]["stored"] == result["lag"]["sent"] > 0
    assert result["lag_rate_eps"] > 0

    assert_results_written(tmp_path, "ingest", result)

    # Nothing left behind: the throw-away database is gone.
    assert_database_dropped(result["settings"]["database"])
