"""Forward the outbox to Kafka: send, collect the acknowledgements, then mark the rows done.

Messages keep the timestamp the producer stamps at send (no explicit ``timestamp_ms``): fusion
reads it as the "sent" time when it measures lag. Sending is pipelined: batch k+1 is handed to
the producer before the acknowledgements of batch k are collected, so the Python send loop
overlaps the producer's network thread. When the broker is unreachable the publisher stops
sending, and ``drain`` retries with backoff until its deadline; whatever is not acknowledged
stays in the outbox for the next run, which sends it first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from connectors.outbox import Outbox, OutboxRecord
from hub.bus.kafka import EventLog
from hub.bus.producer import BROKER_ERRORS, CachedPartitioner, bounded_producer, discard
from hub.errors import Unavailable

log = logging.getLogger(__name__)

BATCH = 20_000  # outbox rows per send batch (one acknowledgement round, one watermark update)
CONNECT_TIMEOUT_S = 5.0  # per connection attempt; max_wait bounds the total
ACK_FLOOR_S = 10.0

_InFlight = tuple[list[int], list[FutureRecordMetadata]]


class DeliveryError(Unavailable, RuntimeError):
    """The broker did not acknowledge every message sent."""


@dataclass
class Forwarded:
    """Acknowledged rows, split at the run's boundary seq: put by an earlier run vs. this one."""

    old: int = 0
    new: int = 0


class Publisher:
    """Sends one outbox through one producer. Not thread-safe; one per connector run.

    ``max_wait`` bounds the time spent on an unreachable broker, counted from the start of
    the first failed attempt (``start``, ``submit`` or ``drain``); ``drain`` always makes at
    least one more attempt.
    """

    def __init__(
        self,
        settings: EventLog,
        outbox: Outbox,
        *,
        max_wait: float = 30.0,
        batch: int = BATCH,
        **producer_overrides: Any,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.max_wait = max_wait
        self.batch = batch
        self.boundary = outbox.last_seq()  # rows at or below it were put before this run
        self.acked = Forwarded()
        self.healthy = True  # False after a failure: later submits leave it to drain()
        self.last_error: str | None = None
        self._overrides = producer_overrides
        self._producer: KafkaProducer | None = None
        self._in_flight: _InFlight | None = None
        self._trouble_since: float | None = None  # start of the first failed attempt

    def start(self) -> None:
        """Send what earlier runs left, before anything new (one attempt; drain retries)."""
        if self.outbox.count():
            self._attempt(self._forward_pending, time.monotonic() + self.max_wait)

    def submit(self, records: list[OutboxRecord]) -> None:
        """Send freshly put rows (already durable). After a failure this does nothing: the
        rows stay pending and ``drain`` sends them in order."""
        if self.healthy and records:
            self._attempt(
                lambda deadline: self._pipeline(records, deadline), time.monotonic() + self.max_wait
            )

    def drain(self) -> bool:
        """Deliver everything pending, retrying with backoff for at most ``max_wait`` seconds.
        Returns True when the outbox is empty."""
        delay = 0.25
        deadline = (self._trouble_since or time.monotonic()) + self.max_wait
        while not self._attempt(self._drain_once, deadline):
            left = deadline - time.monotonic()
            if left <= 0:
                pending = self.outbox.count()
                log.warning(
                    "broker unreachable; events kept in the outbox",
                    extra={"pending": pending, "error": self.last_error},
                )
                return False
            log.info("broker unreachable; retrying", extra={"in_s": round(min(delay, left), 2)})
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
        return True

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _attempt(self, operation: Callable[[float], None], deadline: float) -> bool:
        began = time.monotonic()
        try:
            operation(deadline)
        except (*BROKER_ERRORS, DeliveryError) as exc:
            self._fail(exc)
            self._trouble_since = self._trouble_since or began
            return False
        self._trouble_since = None
        return True

    def _drain_once(self, deadline: float) -> None:
        self._finish_in_flight(deadline)
        self._forward_pending(deadline)
        self.outbox.compact()
        self.healthy = True

    def _forward_pending(self, deadline: float) -> None:
        while rows := self.outbox.pending(self.batch):
            self._pipeline(rows, deadline)
            self._finish_in_flight(deadline)

    def _pipeline(self, records: list[OutboxRecord], deadline: float) -> None:
        producer = self._connect(deadline)
        topic = self.settings.events_topic
        futures = [producer.send(topic, r.value, key=r.key) for r in records]
        previous, self._in_flight = self._in_flight, ([r.seq for r in records], futures)
        if previous is not None:
            self._settle(previous, deadline)

    def _finish_in_flight(self, deadline: float) -> None:
        if self._in_flight is None:
            return
        assert self._producer is not None  # in-flight rows imply a producer
        self._producer.flush(timeout=_ack_timeout(deadline))
        previous, self._in_flight = self._in_flight, None
        self._settle(previous, deadline)

    def _settle(self, sent: _InFlight, deadline: float) -> None:
        """Collect one batch's acknowledgements and record them in the outbox."""
        acked: list[int] = []
        error: Exception | None = None
        for seq, future in zip(*sent, strict=True):
            try:
                future.get(timeout=_ack_timeout(deadline))
                acked.append(seq)
            except KafkaError as exc:
                error = error or exc
        self.outbox.acknowledge(acked)
        old = sum(1 for s in acked if s <= self.boundary)
        self.acked.old += old
        self.acked.new += len(acked) - old
        if error is not None:
            raise DeliveryError(f"{len(sent[0]) - len(acked)} messages not acknowledged: {error}")

    def _connect(self, deadline: float) -> KafkaProducer:
        if self._producer is None:
            left = deadline - time.monotonic()
            config: dict[str, Any] = {
                "partitioner": CachedPartitioner(),
                "linger_ms": 20,
                "batch_size": 1024 * 1024,
            }
            config.update(self._overrides)
            wait_s = min(max(left, 0.5), CONNECT_TIMEOUT_S)
            self._producer = bounded_producer(self.settings, wait_s, **config)
        return self._producer

    def _fail(self, exc: BaseException) -> None:
        self.healthy = False
        text = str(exc)
        self.last_error = text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
        # Unsettled rows stay pending (they may reach Kafka twice; fusion drops the copy).
        self._in_flight = None
        if self._producer is not None:
            discard(self._producer)
            self._producer = None


def _ack_timeout(deadline: float) -> float:
    # A live but busy broker (the demo runs 40 connectors on 2 cores) may take seconds to
    # acknowledge a batch: never wait less than ACK_FLOOR_S, whatever max_wait says.
    return max(deadline - time.monotonic(), ACK_FLOOR_S)
