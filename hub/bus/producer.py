"""Producing events: the set-up connectors and the API share (a producer that gives up on an
unreachable broker in bounded time, dropped after a failure), the memoised partitioner, and the
API's one shared producer that answers a broker outage at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner

from hub.bus.kafka import EventLog, producer
from hub.errors import Unavailable

BROKER_ERRORS = (KafkaError, OSError)  # what an unreachable or failing broker raises
SEND_TIMEOUT_S = 5.0  # connecting, and then waiting for the acknowledgements of one batch
COOLDOWN_S = 5.0  # after a broker failure, answer 503 at once for this long (no thread pile-up)


class BrokerUnavailable(Unavailable):
    """The event log cannot take events now; ``retry_after_s``: when to try again."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the event log is unavailable; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class CachedPartitioner(DefaultPartitioner):
    """The default murmur2 partitioner, memoised: a replay has few distinct tile keys and the
    pure-Python murmur2 was ~17% of the send loop."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: Any,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, None, value, serialized_value, cluster))
        cache_key = (topic, serialized_key, len(cluster.partitions_for_topic(topic) or ()))
        found = self._cache.get(cache_key)
        if found is None:
            found = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            self._cache[cache_key] = found
        return int(found)


def bounded_producer(settings: EventLog, wait_s: float, **overrides: Any) -> KafkaProducer:
    """A producer that waits at most ``wait_s`` to bootstrap, and as long for buffer space or
    metadata in ``send`` (kafka-python's 30 s defaults would outlast a short wait or a client's
    patience); ``overrides`` win."""
    wait_ms = int(wait_s * 1000)
    config: dict[str, Any] = {"bootstrap_timeout_ms": wait_ms, "max_block_ms": wait_ms}
    config.update(overrides)
    return producer(settings, **config)


def discard(failed: KafkaProducer) -> None:
    """Close a producer after a failure without waiting: it may hold doomed batches."""
    with contextlib.suppress(KafkaError):
        failed.close(timeout=0)


class EventProducer:
    """One KafkaProducer to the events topic, shared by threads (KafkaProducer is thread-safe):
    created at first use (the API starts without a broker), closed by its owner.

    After a failure the producer is dropped (it may hold doomed batches) and for ``cooldown_s``
    every send fails at once, so an outage does not park a request thread per call for
    ``timeout_s``; the next send after that connects anew.
    """

    def __init__(
        self,
        settings: EventLog,
        timeout_s: float = SEND_TIMEOUT_S,
        cooldown_s: float = COOLDOWN_S,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._down_until = 0.0

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) records to the events topic and wait for every
        acknowledgement; :class:`BrokerUnavailable` when any is missing."""
        producer = self._connect()
        deadline = time.monotonic() + self.timeout_s
        topic = self.settings.events_topic
        try:
            futures = [producer.send(topic, value=value, key=key) for key, value in records]
            for future in futures:
                future.get(timeout=max(deadline - time.monotonic(), 0.01))
        except BROKER_ERRORS as exc:
            self._discard(producer)
            raise BrokerUnavailable(self.cooldown_s) from exc

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self.timeout_s)

    def _connect(self) -> KafkaProducer:
        # Under the lock: one bootstrap at a time; the threads queued behind it get its result.
        with self._lock:
            if self._producer is not None:
                return self._producer
            wait = self._down_until - time.monotonic()
            if wait > 0:
                raise BrokerUnavailable(wait)
            timeout_ms = int(self.timeout_s * 1000)
            try:
                self._producer = bounded_producer(
                    self.settings,
                    self.timeout_s,
                    client_id="hub-api-ingest",
                    request_timeout_ms=timeout_ms,
                    delivery_timeout_ms=timeout_ms + 1000,  # > linger + request timeout
                )
            except BROKER_ERRORS as exc:
                self._down_until = time.monotonic() + self.cooldown_s
                raise BrokerUnavailable(self.cooldown_s) from exc
            return self._producer

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown_s
            current = self._producer is producer  # else another thread already dropped it
            if current:
                self._producer = None
        if current:
            discard(producer)
