"""Smoke run of the real ``hub bench fusion`` (small, not timed): real incidents with simulated
reporting go through its own broker, a real fusion process and a database of its own; the
hub's incidents are scored against the truth beside the naive baseline, the cost is measured
with the picture's stages off and on, and nothing is left behind. The targets are for the full
run (README, Performance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from statistics import median

import orjson
import pytest

from tests.bench_helpers import SERVER, assert_database_dropped, assert_results_written

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_bench_fusion_smoke(tmp_path: Path) -> None:
    env = dict(os.environ, HUB_DATABASE_URL=f"{SERVER}/postgres")
    args = ["--incidents", "400", "--variant", "default", "--rounds", "1", "--cost-months", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "fusion", *args, "--json",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "hub F1 (B-cubed)" in proc.stdout and "correlating / skeleton" in proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    quality = result["quality"]["default"]
    hub, baseline = quality["hub"], quality["baseline"]
    assert quality["stored"] == hub["reports"] == baseline["reports"] > 400  # 1-4 per incident
    assert hub["unclustered"] == 0  # every report came back in an incident of the pipeline's
    assert hub["true_incidents"] == 400
    assert 0.5 < hub["f1"] <= 1 and 0.5 < baseline["f1"] <= 1
    assert result["f1"] == hub["f1"]
    assert result["f1_over_baseline"] == pytest.approx(hub["f1"] - baseline["f1"])

    cost = result["cost"]
    assert cost["reports"] == 2 * hub["reports"]  # the month, and again 35 days later
    assert cost["skeleton_median_eps"] > 0 and cost["correlating_median_eps"] > 0
    off, on = median(cost["skeleton_eps"]), median(cost["correlating_eps"])
    assert cost["ratio_pct"] == pytest.approx(100 * on / off, abs=0.06)
    assert cost["correlation_step_eps"] > 0
    assert result["checks_ok"] is True
    assert_results_written(tmp_path, "fusion", result)
    assert_database_dropped(f"hub_bench_{result['run']}")


def _bench_fusion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "bench", "fusion", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.timeout(150)
def test_bench_fusion_in_process(tmp_path: Path) -> None:
    """The model alone, in the bench's process: no broker, no database, no cost phase; the
    same table and figures, per variant against its own targets, results of their own."""
    variants = ["--variant", "default", "--variant", "mixed types"]
    proc = _bench_fusion("--in-process", "--incidents", "300", *variants, "--json",
                         "--results-dir", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "false corroboration" in proc.stdout and "correlating / skeleton" not in proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mode"] == "in-process" and result["cost"] is None
    assert list(result["quality"]) == ["default", "mixed types"]
    mixed = result["quality"]["mixed types"]
    assert mixed["hub"]["true_incidents"] == 330  # 30 collisions, each with a medical call
    assert mixed["hub"]["unclustered"] == 0 and result["checks_ok"] is True
    assert result["targets"]["mixed types: f1"]["limit"] == 0.92
    assert result["targets"]["default: f1"]["limit"] == 0.95
    assert set(result["passed"]) == set(result["measured"]) == set(result["targets"])
    assert result["f1"] == result["quality"]["default"]["hub"]["f1"]
    assert_results_written(tmp_path, "fusion-in-process", result)


def test_bench_fusion_refuses_an_unknown_variant(tmp_path: Path) -> None:
    proc = _bench_fusion("--in-process", "--variant", "density x3", "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and "density x3" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_months_repeat_the_reports_a_month_apart_with_ids_of_their_own() -> None:
    from hub.bench.fusion import months
    from hub.bench.fusion_quality import GeneratorParams, generate, true_incidents

    reports = generate(true_incidents()[:30], GeneratorParams())
    copies = months(reports, 3)
    assert len(copies) == 3 * len(reports)
    assert len({r.report_id for r in copies}) == len(copies)
    for c in (1, 2):
        for original, copy in zip(reports, copies[c * len(reports) :], strict=False):
            event = orjson.loads(copy.event)
            assert event["event_id"] == copy.report_id != original.report_id
            shifted = datetime.fromisoformat(event["observed_at"]).timestamp()
            assert shifted - original.observed_s == pytest.approx(c * 35 * 86400, abs=1e-3)
            assert event["geometry"] == orjson.loads(original.event)["geometry"]
