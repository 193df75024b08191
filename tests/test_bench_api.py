"""Smoke run of the real ``hub bench api`` (small, not timed): it stores events in a database of
its own, runs two real API servers (auth on, auth off), loads both in alternating rounds,
reports consistent figures, and leaves nothing behind. The 85% target is for the full run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bench_helpers import SERVER, assert_database_dropped, assert_results_written

ROOT = Path(__file__).resolve().parents[1]
MODES = ("auth_on", "auth_off")


def _run_bench(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    # Same server as the other tests; the bench makes (and drops) a database of its own.
    env = dict(os.environ, HUB_DATABASE_URL=f"{SERVER}/postgres")
    env.pop("HUB_API_DATABASE_URL", None)  # would point the servers at another database
    args = ["--events", "3000", "--seconds", "1.5", "--rounds", "2", "--concurrency", "2"]
    args += ["--warmup-seconds", "0.5", "--json", "--results-dir", str(results_dir)]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "api", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.stdout.strip(), proc.stderr
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(180)
def test_bench_api_smoke(tmp_path: Path) -> None:
    proc, result = _run_bench(tmp_path)
    assert "requests/s" in proc.stdout and "crc32c" in proc.stdout  # the table, the machine line

    # The auth-on server is really behind authorization: no token, no events.
    assert result["checks"]["auth_on_status_without_token"] == 401
    assert result["checks"]["errors"] == 0, result["modes"]
    assert result["checks_ok"] is True and proc.returncode == 0, proc.stdout + proc.stderr

    assert result["events"] == 3000
    for mode in MODES:
        figures = result["modes"][mode]
        assert figures["requests"] == figures["ok"] > 0 and figures["errors"] == 0
        assert figures["requests_per_s"] == result["requests_per_s"][mode] > 0
        lat = figures["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert result["p99_ms"][mode] == lat["p99"]
        # Both servers return full pages: the comparison is of equal work.
        assert result["checks"]["features_per_page"][mode] == 100

    rates = result["requests_per_s"]
    assert result["ratio"] == pytest.approx(rates["auth_on"] / rates["auth_off"], abs=1e-4)
    assert result["passed"]["auth_ratio_pct"] == (100 * result["ratio"] >= 85)

    # Warm-up plus two rounds of each mode, alternating which goes first.
    order = [(p["round"], p["mode"]) for p in result["phases"]]
    assert order == [
        (0, "auth_on"),
        (0, "auth_off"),
        (1, "auth_on"),
        (1, "auth_off"),
        (2, "auth_off"),
        (2, "auth_on"),
    ]

    assert_results_written(tmp_path, "api", result)

    # Nothing left behind: the throw-away database is gone, and so are both servers.
    assert_database_dropped(result["settings"]["database"])
    for server in result["servers"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(server["pid"], 0)


def test_bench_api_refuses_a_bad_bbox_before_setting_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "api", "--bbox", "1,2,3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "expected 4 numbers" in proc.stderr
