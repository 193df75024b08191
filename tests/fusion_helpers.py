"""Helpers for the pipeline tests: produce a workload, run fusion until a condition holds."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from hub.bus.kafka import ensure_topics, producer
from hub.fusion.worker import FusionWorker
from hub.settings import Settings
from hub.stack.local import child_env
from hub.store.db import connect
from hub.store.stats import read_fusion_counters

# For tests that drive the API hard: the per-client rate limit is not what they test.
GENEROUS_LIMITS: dict[str, Any] = {"rate_limit_per_s": 1000.0, "rate_limit_burst": 1000}


def own_stream(base: Settings, name: str, **update: Any) -> Settings:
    """``base`` with an events topic, a dead-letter topic and a consumer group of its own
    (created), so that a test's stream is not shared; the database stays ``base``'s."""
    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "events_topic": f"{name}.{tag}",
            "dlq_topic": f"{name}-dlq.{tag}",
            "consumer_group": f"{name}.{tag}",
            "fusion_metrics_port": 0,  # nobody scrapes it; a fixed port would collide
            **update,
        }
    )
    ensure_topics(settings)
    return settings


def produce(settings: Settings, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    p = producer(settings)
    n = 0
    for key, value in messages:
        p.send(settings.events_topic, key=key, value=value)
        n += 1
    p.flush()
    p.close()
    return n


def fusion_stats(settings: Settings) -> dict[str, int]:
    with connect(settings) as conn:
        return asdict(read_fusion_counters(conn, settings.consumer_group))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def running_worker(settings: Settings) -> Iterator[FusionWorker]:
    """A fusion worker on a thread of this process; stopped and joined on exit."""
    worker = FusionWorker(settings)
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=_run, name="fusion-test")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
    if errors:
        raise errors[0]


def consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 30) -> list:
    """Every record of ``topic`` (no group), waiting until at least ``expected`` arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(consumer)
    finally:
        consumer.close()
    return out


def start_fusion(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``hub fusion run`` as a real process (so a test can SIGKILL it), logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hub", "fusion", "run"],
            env=child_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
