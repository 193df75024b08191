"""``hub bench fusion``: how good the hub's incidents are, and what correlation costs.

The reports are those of the quality harness (``hub.bench.fusion_quality``): the real SFPD
incidents of December 2018, each reported by 1 to 4 simulated sources with GPS noise, delays and
type confusion, sent in the order they arrive. Everything runs through the real pipeline: the
reports are produced to a topic of the bench's own broker, ``hub fusion run`` drains it into a
throw-away database, and the incidents are read back from ``incident_report``.

1. quality, per variant (default; noise x2; density x2 and x4, the same incidents packed into
   fewer days): B-cubed precision, recall and F1 of the hub's incidents against the true ones,
   the naive baseline's F1 on the same reports, the corroborated share and incidents per 1,000
   reports;
2. cost: the default variant drained with the picture's stages off (the skeleton: events only)
   and on, alternately, ``rounds`` times each; the figure is the ratio of the median steady
   rates, measured side by side in one run on this (shared, noisy) machine.
"""

from __future__ import annotations

import math
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from geo.tiles import tile_key
from hub.bench.env import EnvOptions, bench_env, fusion_process
from hub.bench.fusion_quality import (
    VARIANTS,
    GeneratedReport,
    GeneratorParams,
    evaluate,
    generate,
    naive_baseline,
    sf_world,
    true_incidents,
)
from hub.bench.ingest import BenchFailed, Run, Store, fill_topic, progress_bars
from hub.bench.report import Row, Target, machine_info
from hub.bus.kafka import ensure_topics
from hub.fusion.correlate import Report, cluster
from hub.fusion.rules import Rules
from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import orphan_reports

TARGETS = {
    "f1": Target(0.95, decimals=3),
    "f1_over_baseline": Target(0.02, decimals=3),  # "clearly above": two points of F1 or more
    "cost_ratio_pct": Target(50, unit=" %"),
}
# Fusion's tables, emptied between runs (one database, one broker for the whole bench).
_TABLES = (
    "incident_timeline, incident_alias, incident_report, incident, risk_cell, picture_clock,"
    " sensor_state, resource_balance, event, community_stats, fusion_stats, consumer_offset"
)


@dataclass(frozen=True)
class FusionOptions:
    params: GeneratorParams = field(default_factory=GeneratorParams)
    incidents: int | None = None  # the first N true incidents; None: all
    variants: tuple[str, ...] = tuple(name for name, _ in VARIANTS)
    rounds: int = 2  # cost: drains per mode
    keep: bool = False


@dataclass(frozen=True)
class Drain:
    """One drain of a topic of reports by a fusion process."""

    reports: int
    stored: int
    steady_eps: float | None
    wall_eps: float
    clusters: dict[str, tuple[str, str]]  # report_id -> ("hub", incident id); empty when off
    orphans: tuple[int, int] = (0, 0)  # members without their event / incident (must be none)


def _drain(
    run: Run, settings: Settings, reports: Sequence[GeneratedReport], label: str, work_dir: Path
) -> Drain:
    """Empty the store, fill a fresh topic with ``reports`` in arrival order, let fusion drain
    it; the incidents when the stages were on."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY")
        conn.execute("DELETE FROM grid_cell WHERE source = 'h3'")
    messages = [(tile_key(r.lon, r.lat, settings.tile_zoom), r.event) for r in reports]
    run.settings = settings
    run.store.group = settings.consumer_group
    ensure_topics(settings)
    fill_topic(run, messages)
    with fusion_process(settings, work_dir / f"fusion-{label}.log") as fusion:
        run.fusion = fusion
        task = run.progress.add_task(f"drain {label}", total=len(messages), info="")
        first, done = run.wait_consumed(
            len(messages), lambda c: run.progress.update(task, completed=c.consumed)
        )
        stored = run.store.counters().stored
    steady = (
        (len(messages) - first.consumed) / (done.at - first.at)
        if first is not None and done.at > first.at
        else None
    )
    clusters = _clusters(settings) if settings.fusion_incidents else {}
    with connect(settings, autocommit=True) as conn:
        orphans = orphan_reports(conn)
    wall = len(messages) / (done.at - fusion.started)
    return Drain(len(messages), stored, steady, wall, clusters, orphans)


def _clusters(settings: Settings) -> dict[str, tuple[str, str]]:
    with connect(settings, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_id, incident_id FROM incident_report WHERE NOT cancelled"
        ).fetchall()
    return {str(event_id): ("hub", str(incident)) for event_id, incident in rows}


def _settings(base: Settings, tag: str, label: str, incidents: bool) -> Settings:
    return base.model_copy(
        update={
            "events_topic": f"bench.{tag}.{label}.events",
            "dlq_topic": f"bench.{tag}.{label}.dlq",
            "consumer_group": f"hub-bench-{tag}-{label}",
            "fusion_incidents": incidents,
        }
    )


def _quality(reports: Sequence[GeneratedReport], drain: Drain) -> dict[str, Any]:
    hub: dict[str, Any] = dict(evaluate(reports, lambda _: drain.clusters))
    # the time is the drain's (through the whole pipeline), not that of a call
    hub |= {"seconds": None, "reports_per_s": drain.steady_eps}
    baseline = evaluate(reports, naive_baseline)
    return {
        "hub": hub,
        "baseline": baseline,
        "f1_over_baseline": hub["f1"] - baseline["f1"],
        "stored": drain.stored,
        "orphan_reports": list(drain.orphans),
    }


def _phases(run: Run, opts: FusionOptions, tag: str, work_dir: Path) -> dict[str, Any]:
    incidents = true_incidents()[: opts.incidents]
    world = sf_world()
    base = run.settings
    quality: dict[str, Any] = {}
    default_reports: Sequence[GeneratedReport] = ()
    for name, overrides in VARIANTS:
        if name not in opts.variants:
            continue
        params = replace(opts.params, **overrides)
        reports = sorted(generate(incidents, params, world), key=lambda r: r.arrival_order)
        default_reports = reports if name == "default" else default_reports
        label = name.replace(" ", "")
        drain = _drain(run, _settings(base, tag, label, True), reports, label, work_dir)
        quality[name] = _quality(reports, drain) | {"params": asdict(params)}
    cost = _cost(run, opts, tag, work_dir, default_reports) if default_reports else None
    return {"quality": quality, "cost": cost}


def _cost(
    run: Run, opts: FusionOptions, tag: str, work_dir: Path, reports: Sequence[GeneratedReport]
) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for k in range(opts.rounds):
        for mode in ("off", "on"):
            label = f"cost-{mode}-{k}"
            settings = _settings(run.settings, tag, label, mode == "on")
            drain = _drain(run, settings, reports, label, work_dir)
            rates[mode].append(drain.steady_eps or drain.wall_eps)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    step = correlation_rate(reports)
    return {
        "reports": len(reports),
        "skeleton_eps": rates["off"],
        "correlating_eps": rates["on"],
        "skeleton_median_eps": round(off),
        "correlating_median_eps": round(on),
        "ratio_pct": round(100 * on / off, 1),
        "correlation_step_eps": round(step),
        "correlation_step_ratio_pct": round(100 * step / off, 1),
    }


def correlation_rate(reports: Sequence[GeneratedReport], rounds: int = 3) -> float:
    """Reports per second through the correlation step alone (``correlate.cluster`` on all the
    reports at once, in this process; the best of ``rounds``): what the pipeline around it
    (decoding, storing, the incident rows, risk) is measured against."""
    rules = Rules.load()
    batch = [
        Report(
            event_id=uuid.UUID(r.report_id),
            event_type=r.event_type,
            status="actual",
            observed_at=datetime.fromtimestamp(r.observed_s, UTC),
            lon=r.lon,
            lat=r.lat,
            community_id=r.community_id,
            source_key=r.source_key,
        )
        for r in reports
    ]
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        cluster(batch, rules)
        best = min(best, time.perf_counter() - started)
    return len(batch) / best


def run_fusion(opts: FusionOptions, base: Settings, console: Console) -> dict[str, Any]:
    """Set up (broker, database), run both phases, tear down; returns the results."""
    tag = secrets.token_hex(4)
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-bench-{tag}-"))
    started, machine = datetime.now(UTC), machine_info()
    keep_logs = opts.keep
    try:
        env = EnvOptions(tag, work_dir, keep=opts.keep)
        with bench_env(base, env) as settings, progress_bars(console) as progress:
            store = Store(settings)
            try:
                run = Run(settings, store, progress, opts.params.seed, tag)
                phases = _phases(run, opts, tag, work_dir)
            finally:
                store.close()
    except Exception as exc:
        keep_logs = True
        raise BenchFailed(
            f"{type(exc).__name__}: {exc}\n(process logs kept in {work_dir})"
        ) from exc
    finally:
        if not keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
    return _summarise(opts, phases, tag, started, machine)


def _summarise(
    opts: FusionOptions,
    phases: dict[str, Any],
    tag: str,
    started: datetime,
    machine: dict[str, Any],
) -> dict[str, Any]:
    quality, cost = phases["quality"], phases["cost"]
    default = quality.get("default")
    measured = {
        "f1": default["hub"]["f1"] if default else None,
        "f1_over_baseline": default["f1_over_baseline"] if default else None,
        "cost_ratio_pct": cost["ratio_pct"] if cost else None,
    }
    checks = all(
        q["stored"] == q["hub"]["reports"] and q["orphan_reports"] == [0, 0]
        for q in quality.values()
    )
    return {
        "bench": "fusion",
        "run": tag,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        **measured,
        "targets": {k: t.as_json() for k, t in TARGETS.items()},
        "passed": {k: TARGETS[k].met(v) for k, v in measured.items()},
        "checks_ok": checks,
        "quality": quality,
        "cost": cost,
        "settings": {
            "incidents": opts.incidents,
            "rounds": opts.rounds,
            "variants": list(opts.variants),
            "params": asdict(opts.params),
        },
        "machine": machine,
    }


def table_rows(result: dict[str, Any]) -> list[Row]:
    rows = [row for name, q in result["quality"].items() for row in _quality_rows(name, q)]
    return rows + (_cost_rows(result["cost"]) if result["cost"] else [])


def _quality_rows(name: str, q: dict[str, Any]) -> list[Row]:
    """One variant: the hub beside the baseline; targets on the default variant only."""
    hub, base = q["hub"], q["baseline"]
    default = name == "default"
    return [
        Row(name, "hub precision / recall", f"{hub['precision']:.3f} / {hub['recall']:.3f}"),
        Row(
            name,
            "hub F1 (B-cubed)",
            f"{hub['f1']:.3f}",
            TARGETS["f1"] if default else None,
            hub["f1"],
        ),
        Row(
            name,
            "naive baseline F1 (hub - baseline)",
            f"{base['f1']:.3f} ({q['f1_over_baseline']:+.3f})",
            TARGETS["f1_over_baseline"] if default else None,
            q["f1_over_baseline"],
        ),
        Row(
            name,
            "corroborated share (true)",
            f"{hub['corroborated_share']:.1%} ({hub['true_corroborated_share']:.1%})",
        ),
        Row(
            name,
            "incidents / 1,000 reports (true)",
            f"{hub['incidents_per_1000_reports']:.0f}"
            f" ({hub['true_incidents_per_1000_reports']:.0f})",
        ),
        Row(
            name,
            "reports stored",
            f"{q['stored']:,} of {hub['reports']:,}",
            check=q["stored"] == hub["reports"],
        ),
        Row(
            name,
            "members without event / incident",
            "{} / {}".format(*q["orphan_reports"]),
            check=q["orphan_reports"] == [0, 0],
        ),
    ]


def _cost_rows(cost: dict[str, Any]) -> list[Row]:
    return [
        Row("cost", "skeleton (events only), median ev/s", f"{cost['skeleton_median_eps']:,}"),
        Row("cost", "with correlation, median ev/s", f"{cost['correlating_median_eps']:,}"),
        Row(
            "cost",
            "correlating / skeleton",
            f"{cost['ratio_pct']:.1f} %",
            TARGETS["cost_ratio_pct"],
            cost["ratio_pct"],
        ),
        Row(
            "cost",
            "correlation step alone, ev/s (/ skeleton)",
            f"{cost['correlation_step_eps']:,} ({cost['correlation_step_ratio_pct']:.0f} %)",
        ),
    ]
