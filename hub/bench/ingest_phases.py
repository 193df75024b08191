"""The phases of ``hub bench ingest``, each against a running fusion worker (``Run.fusion``):

- drain: a topic pre-filled with N events; the steady rate runs from the first committed batch
  to the last (process start and group join excluded: they are in the wall figure);
- sustained: producer processes flat out while fusion runs; events stored per second between
  the first and the last send, from the store's own timestamps;
- lag: one producer paced at R events/s; per event ``ingested_at - sent_at`` (Kafka timestamp
  to the insert just before commit), percentiles computed by PostgreSQL. A follower
  (``hub.bench.visibility``) may watch the producer's count meanwhile.

Every phase returns its figures and ``ok``: whether its counts add up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import TaskID

from hub.bench.pipeline import Run
from hub.bench.producers import ProducerJob, ProducerResult, producing
from hub.bench.steps import mean_ms, scrape_or_none
from hub.bench.workload import Workload
from hub.store.stats import FusionCounters, orphan_reports

# --- drain ----------------------------------------------------------------------------------


def measure_drain(run: Run, workload: Workload, label: str, picture: bool) -> dict[str, Any]:
    """Wait until fusion has drained the pre-filled topic; its rates and the checks."""
    assert run.fusion is not None
    n = len(workload.messages)
    task = run.progress.add_task(f"drain ({label})", total=n, info="")
    first, done = run.wait_consumed(
        n, lambda c: run.progress.update(task, completed=c.consumed, info=f"{c.stored:,} stored")
    )
    counters = run.store.counters()
    steps = scrape_or_none(run.fusion.metrics_port)  # a fresh worker: all of it is the drain
    in_store = run.store.one(
        "SELECT count(*) FROM event WHERE source_connector = %s", run.connector("drain")
    )[0]
    wall_s = done.at - run.fusion.started
    # None when one poll took the whole topic: then there is no "first to last batch".
    steady_s = done.at - first.at if first is not None else None
    figures = {
        "events": n,
        "distinct": len(workload.valid_ids),
        "duplicates_sent": workload.duplicates,
        "stored": counters.stored,
        "duplicates": counters.duplicates,
        "dlq": counters.dlq,
        "stored_in_db": in_store,
        "start_to_first_commit_s": round(first.at - run.fusion.started, 3) if first else None,
        "first_batch": first.consumed if first else None,
        "wall_s": round(wall_s, 3),
        "wall_eps": round(n / wall_s),
        "steady_s": round(steady_s, 3) if steady_s else None,
        "steady_eps": round((n - first.consumed) / steady_s) if first and steady_s else None,
        "steps_ms": mean_ms({}, steps) if steps is not None else None,
    }
    ok = (
        counters.stored + counters.duplicates == n
        and counters.stored == len(workload.valid_ids) == in_store
        and counters.dlq == 0
    )
    if picture:
        figures |= picture_built(run)
        ok = ok and figures["members"] == in_store and figures["orphans"] == [0, 0]
    return figures | {"ok": ok}


def picture_built(run: Run) -> dict[str, Any]:
    """What the picture made of the stored reports: every one a member of an incident, and
    no member without its event or incident (fusion keeps those references without keys)."""
    incidents, members = run.store.one(
        "SELECT (SELECT count(*) FROM incident), (SELECT count(*) FROM incident_report)"
    )
    return {
        "incidents": incidents,
        "members": members,
        "orphans": list(orphan_reports(run.store.conn)),
    }


# --- producers and fusion together ----------------------------------------------------------


@contextmanager
def _phase_task(run: Run, name: str, seconds: float) -> Iterator[TaskID]:
    task = run.progress.add_task(name, total=seconds, info="")
    yield task
    run.progress.update(task, completed=seconds)


def produce_while_fusing(
    run: Run,
    name: str,
    jobs: list[ProducerJob],
    follow: Callable[[Callable[[], int]], None] | None = None,
) -> list[ProducerResult]:
    """Run the producers to the end, then wait until fusion has consumed all they sent.
    ``follow`` is handed the producers' live count of events sent as soon as they start."""
    before = run.store.counters()
    with _phase_task(run, name, jobs[0].seconds) as task, producing(jobs) as group:
        if follow is not None:
            follow(group.sent)
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


# --- sustained ------------------------------------------------------------------------------

_WINDOW = """
WITH p AS (
    SELECT count(*) AS n, min(sent_at) AS t0, max(sent_at) AS t1, max(ingested_at) AS t2
    FROM event WHERE source_connector = %s
)
SELECT p.n, extract(epoch FROM p.t1 - p.t0)::float8, extract(epoch FROM p.t2 - p.t1)::float8,
       (SELECT count(*) FROM event e WHERE e.source_connector = %s AND e.ingested_at <= p.t1)
FROM p
"""


def measure_sustained(
    run: Run, producers: int, seconds: float, max_events: int | None
) -> dict[str, Any]:
    connector = run.connector("sustained")
    jobs = [
        ProducerJob(run.settings, run.seed, connector, part, seconds, max_events=max_events)
        for part in range(producers)
    ]
    results = produce_while_fusing(run, "sustained (producers + fusion)", jobs)
    stored, window_s, catch_up_s, in_window = run.store.one(_WINDOW, connector, connector)
    sent = sum(r.sent for r in results)
    producer_eps = stored / window_s if window_s else None
    backlog = stored - in_window
    return {
        "producers": producers,
        "seconds": seconds,
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


# --- lag ------------------------------------------------------------------------------------

_LAG = """
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM ingested_at - sent_at) * 1000),
       (max(extract(epoch FROM ingested_at - sent_at)) * 1000)::float8,
       extract(epoch FROM max(sent_at) - min(sent_at))::float8
FROM event WHERE source_connector = %s
"""


def lag_job(run: Run, mode: str, rate: float, seconds: float) -> ProducerJob:
    """The paced producer of a mode's lag phase (its events told apart by connector)."""
    return ProducerJob(run.settings, run.seed, run.connector(f"lag-{mode}"), 0, seconds, rate=rate)


def measure_lag(
    run: Run,
    job: ProducerJob,
    follow: Callable[[Callable[[], int]], None] | None = None,
) -> dict[str, Any]:
    """Send -> stored lag of ``job``'s events (``follow``: see ``produce_while_fusing``)."""
    assert job.rate is not None and run.fusion is not None
    name = f"lag (paced at {job.rate:,.0f}/s)"
    before = scrape_or_none(run.fusion.metrics_port)
    results = produce_while_fusing(run, name, [job], follow)
    after = scrape_or_none(run.fusion.metrics_port)
    stored, pcts, max_ms, span_s = run.store.one(_LAG, job.connector)
    p50, p95, p99 = pcts or (None, None, None)
    return {
        "rate_target": job.rate,
        "seconds": job.seconds,
        "sent": results[0].sent,
        "stored": stored,
        "achieved_eps": round(stored / span_s) if span_s else None,
        "p50_ms": ms(p50),
        "p95_ms": ms(p95),
        "p99_ms": ms(p99),
        "max_ms": ms(max_ms),
        "steps_ms": mean_ms(before, after) if before is not None and after is not None else None,
        "ok": stored == results[0].sent and results[0].errors == 0,
    }


def ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
