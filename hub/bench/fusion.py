"""``hub bench fusion``: how good the hub's incidents are, and what correlation costs.

The reports are those of the quality harness (``hub.bench.fusion_quality``): real incidents
(SFPD December 2018; SFFD calls for the storm), each reported by 1 to 4 simulated sources with
GPS noise, delays and type confusion, sent in the order they arrive. Everything runs through the
real pipeline: the reports are produced to a topic of the bench's own broker, ``hub fusion run``
drains it into a throw-away database, and the incidents are read back from ``incident_report``.

1. quality, per variant (``fusion_quality.variants.VARIANTS``: the defaults; noise x2; the
   same incidents packed 2x to 16x denser; hotspots; a collision beside an unrelated medical
   call; floods; an offset source; an SFFD storm): B-cubed precision, recall and F1 of the
   hub's incidents against the true ones, the naive baseline on the same reports, false
   corroboration, the largest incident, the corroborated share and incidents per 1,000 reports;
2. cost: the default variant, its month repeated ``cost_months`` times (``months``), drained
   with the picture's stages off (the skeleton: events only) and on, alternately, ``rounds``
   times each; the figure is the ratio of the median steady rates, measured side by side in
   one run on this (shared, noisy) machine.

``run_in_process`` scores the same variants with the hub's correlation model called in this
process (``fusion_quality.hub_model``): no broker, no database, no cost phase; for tuning.
Targets and the table: ``hub.bench.fusion_table``.
"""

from __future__ import annotations

import math
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from connectors.fields import rfc3339
from geo.tiles import tile_key
from hub.bench.env import EnvOptions, bench_env, fusion_process
from hub.bench.fusion_quality import (
    GeneratedReport,
    GeneratorParams,
    as_report,
    evaluate,
    hub_clusterer,
    naive_baseline,
    select,
    sf_world,
    variant_names,
    variant_reports,
)
from hub.bench.fusion_quality.scoring import Claimed
from hub.bench.fusion_table import verdicts
from hub.bench.pipeline import Run, Store, empty_fusion_tables, fill_topic
from hub.bench.report import BenchFailed, machine_info, progress_bars
from hub.bus.kafka import ensure_topics
from hub.fusion.incident.reference import cluster
from hub.fusion.rules import Rules
from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import orphan_reports

# Fusion's tables, emptied between runs (one database, one broker for the whole bench).


@dataclass(frozen=True)
class FusionOptions:
    params: GeneratorParams = field(default_factory=GeneratorParams)
    incidents: int | None = None  # the first N true incidents; None: all
    variants: tuple[str, ...] = tuple(variant_names())
    rounds: int = 2  # cost: drains per mode
    keep: bool = False
    cost_months: int = 5  # cost: the default month of reports this many times (``months``)


@dataclass(frozen=True)
class Drain:
    """One drain of a topic of reports by a fusion process."""

    reports: int
    stored: int
    steady_eps: float | None
    wall_eps: float
    clusters: Mapping[str, Hashable]  # report_id -> ("hub", incident id); {} when off
    orphans: tuple[int, int] = (0, 0)  # members without their event / incident (must be none)


def _drain(
    run: Run, settings: Settings, reports: Sequence[GeneratedReport], label: str, work_dir: Path
) -> Drain:
    """Empty the store, fill a fresh topic with ``reports`` in arrival order, let fusion drain
    it; the incidents when the stages were on."""
    with connect(settings, autocommit=True) as conn:
        empty_fusion_tables(conn)
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


def _clusters(settings: Settings) -> Claimed:
    """The stored incidents, and those the hub calls corroborated."""
    with connect(settings, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_id, incident_id FROM incident_report WHERE NOT cancelled"
        ).fetchall()
        claimed = conn.execute(
            "SELECT id FROM incident WHERE verification = 'corroborated'"
        ).fetchall()
    labels = {str(event_id): ("hub", str(incident)) for event_id, incident in rows}
    return Claimed(labels, [("hub", str(i)) for (i,) in claimed])


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
    hub = evaluate(reports, lambda _: drain.clusters)
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
    world = sf_world()
    base = run.settings
    quality: dict[str, Any] = {}
    default_reports: Sequence[GeneratedReport] = ()
    for name, overrides in select(opts.variants):
        params = replace(opts.params, **overrides)
        reports = variant_reports(params, opts.incidents, world)  # in arrival order
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
    reports = months(reports, opts.cost_months)
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


_COPY_NS = uuid.UUID("5b1d0c3e-8f7a-4e62-b9d4-1c3a5e7f9b20")
_MONTH = timedelta(days=35)  # more than any window: no report reaches into another copy


def months(reports: Sequence[GeneratedReport], copies: int) -> list[GeneratedReport]:
    """The reports ``copies`` times, each copy 35 days after the one before, with ids of its
    own: the same month of reporting again and again. A skeleton drains one month in under a
    second, two batches: too short to time; the copies never touch each other's incidents."""
    out = list(reports)
    for c in range(1, copies):
        shift = _MONTH * c
        for r in reports:
            event = orjson.loads(r.event)
            event["event_id"] = str(uuid.uuid5(_COPY_NS, f"{c}|{r.report_id}"))
            event["observed_at"] = rfc3339(datetime.fromisoformat(event["observed_at"]) + shift)
            out.append(
                replace(
                    r,
                    report_id=event["event_id"],
                    arrival_s=r.arrival_s + shift.total_seconds(),
                    observed_s=r.observed_s + shift.total_seconds(),
                    event=orjson.dumps(event),
                )
            )
    return out


def correlation_rate(reports: Sequence[GeneratedReport], rounds: int = 3) -> float:
    """Reports per second through the correlation step alone (``reference.cluster`` on all the
    reports at once, in this process; the best of ``rounds``): what the pipeline around it
    (decoding, storing, the incident rows, risk) is measured against."""
    rules = Rules.load()
    batch = [as_report(r) for r in reports]
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
    mode: str = "pipeline",
) -> dict[str, Any]:
    quality, cost = phases["quality"], phases["cost"]
    measured, targets, passed = verdicts(quality, cost)
    if mode == "pipeline":
        checks = all(
            q["stored"] == q["hub"]["reports"] and q["orphan_reports"] == [0, 0]
            for q in quality.values()
        )
    else:  # nothing stored: every report must at least come back in an incident
        checks = all(q["hub"]["unclustered"] == 0 for q in quality.values())
    return {
        "bench": "fusion",
        "mode": mode,
        "run": tag,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        # the default variant's figures and the cost, where they always were
        **{k: measured.get(k) for k in ("f1", "f1_over_baseline", "cost_ratio_pct")},
        "measured": measured,
        "targets": targets,
        "passed": passed,
        "all_passed": all(passed.values()),
        "checks_ok": checks,
        "quality": quality,
        "cost": cost,
        "settings": {
            "incidents": opts.incidents,
            "rounds": opts.rounds if mode == "pipeline" else None,
            "variants": [name for name, _ in select(opts.variants)],
            "params": asdict(opts.params),
        },
        "machine": machine,
    }


def run_in_process(opts: FusionOptions) -> dict[str, Any]:
    """The quality phase with the hub's correlation model called here (``hub_clusterer``)
    instead of the pipeline: the same variants, reports, figures and targets, no cost."""
    started, machine = datetime.now(UTC), machine_info()
    world = sf_world()
    quality: dict[str, Any] = {}
    for name, overrides in select(opts.variants):
        params = replace(opts.params, **overrides)
        reports = variant_reports(params, opts.incidents, world)
        hub, baseline = evaluate(reports, hub_clusterer), evaluate(reports, naive_baseline)
        quality[name] = {
            "hub": hub,
            "baseline": baseline,
            "f1_over_baseline": hub["f1"] - baseline["f1"],
            "params": asdict(params),
        }
    phases = {"quality": quality, "cost": None}
    return _summarise(opts, phases, secrets.token_hex(4), started, machine, "in-process")
