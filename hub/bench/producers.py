"""Benchmark producers, each in a process of its own.

A kafka-python producer is CPU-bound Python: run in the measuring process (or fusion's), its
GIL would slow what it measures. Each producer streams distinct real-shaped events
(``workload.stream``) either flat out or paced at a fixed rate, and reports what it sent.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaProducer

from hub.bench.workload import stream
from hub.bus.kafka import producer
from hub.bus.producer import CachedPartitioner
from hub.settings import Settings

TICK_S = 0.01  # a paced producer sends a small burst every tick
CHECK_EVERY = 512  # a flat-out producer looks at the clock (and publishes its count) this often
_ctx = mp.get_context("spawn")  # no fork: the parent holds sockets and threads


class Counter(Protocol):
    """A shared integer (``multiprocessing.Value``): the producer's live count."""

    value: int


@dataclass(frozen=True)
class ProducerJob:
    settings: Settings
    seed: int
    connector: str
    part: int  # distinct id range per producer of a phase
    seconds: float
    max_events: int | None = None  # stop at this count even before ``seconds``
    rate: float | None = None  # events/s; None: as fast as possible


@dataclass(frozen=True)
class ProducerResult:
    sent: int
    errors: int  # sends the broker did not acknowledge
    send_s: float  # first send to last send
    flush_s: float  # last send to every acknowledgement


class _Sender:
    """One producer, its topic, and a count of the sends the broker refused."""

    def __init__(self, job: ProducerJob) -> None:
        self.topic = job.settings.events_topic
        # The memoised partitioner: pure-Python murmur2 per message would be a bottleneck.
        self.producer: KafkaProducer = producer(job.settings, partitioner=CachedPartitioner())
        self.errors = 0

    def send(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, value=value, key=key).add_errback(self._failed)

    def _failed(self, _exc: BaseException) -> None:
        self.errors += 1


def _send_flat_out(job: ProducerJob, out: _Sender, counter: Counter) -> int:
    deadline = time.monotonic() + job.seconds
    limit = job.max_events
    sent = 0
    for key, value in stream(job.seed, connector=job.connector, part=job.part):
        out.send(key, value)
        sent += 1
        if limit is not None and sent >= limit:
            break
        if sent % CHECK_EVERY == 0:
            counter.value = sent
            if time.monotonic() >= deadline:
                break
    return sent


def _send_paced(job: ProducerJob, out: _Sender, counter: Counter) -> int:
    assert job.rate is not None
    events = stream(job.seed, connector=job.connector, part=job.part)
    limit = job.max_events if job.max_events is not None else sys.maxsize
    start = time.monotonic()
    sent = 0
    while sent < limit and (elapsed := time.monotonic() - start) < job.seconds:
        due = min(int(job.rate * elapsed) + 1, limit)
        for key, value in itertools.islice(events, max(due - sent, 0)):
            out.send(key, value)
        sent = max(sent, due)
        counter.value = sent
        # Sleep to the next tick boundary (not TICK_S after the burst): the rate stays exact.
        time.sleep(TICK_S - (time.monotonic() - start) % TICK_S)
    return sent


def _main(job: ProducerJob, counter: Counter, results: Any) -> None:
    """Process entry point: produce, flush, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    out = _Sender(job)
    began = time.monotonic()
    sent = (_send_paced if job.rate else _send_flat_out)(job, out, counter)
    sent_at = time.monotonic()
    out.producer.flush()
    counter.value = sent
    results.put(ProducerResult(sent, out.errors, sent_at - began, time.monotonic() - sent_at))
    out.producer.close()


class Producers:
    """Running producer processes: their live count, then their results."""

    def __init__(self, jobs: list[ProducerJob]) -> None:
        self._results: Any = _ctx.Queue()
        self._counters = [_ctx.Value("q", 0, lock=False) for _ in jobs]
        self._procs = [
            _ctx.Process(target=_main, args=(job, c, self._results), name=f"bench-producer-{i}")
            for i, (job, c) in enumerate(zip(jobs, self._counters, strict=True))
        ]
        for proc in self._procs:
            proc.start()

    def sent(self) -> int:
        return sum(int(c.value) for c in self._counters)

    def running(self) -> bool:
        return any(p.is_alive() for p in self._procs)

    def results(self, timeout_s: float = 120.0) -> list[ProducerResult]:
        """Wait for every producer's report (a producer that died reports nothing: error)."""
        out: list[ProducerResult] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < len(self._procs):
            if not any(p.is_alive() for p in self._procs) and self._results.empty():
                codes = [p.exitcode for p in self._procs]
                raise RuntimeError(f"a benchmark producer died (exit codes {codes})")
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark producers did not finish")
            try:
                out.append(self._results.get(timeout=0.2))
            except queue.Empty:
                continue
        return out

    def stop(self) -> None:
        """Terminate whatever still runs (after results() they have all exited)."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


@contextmanager
def producing(jobs: list[ProducerJob]) -> Iterator[Producers]:
    """Start the producer processes; always stopped on exit (also on Ctrl-C or failure)."""
    group = Producers(jobs)
    try:
        yield group
    finally:
        group.stop()
