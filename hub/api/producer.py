"""The API's producer of events to Kafka: one shared KafkaProducer per app, made at first use,
and a broker outage answered at once with 503 and ``Retry-After``."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Sequence

from fastapi import FastAPI, HTTPException
from kafka import KafkaProducer
from kafka.errors import KafkaError

from hub.bus.kafka import producer as make_producer
from hub.errors import Unavailable
from hub.settings import Settings

SEND_TIMEOUT_S = 5.0  # connecting, and then waiting for the acknowledgements of one batch
COOLDOWN_S = 5.0  # after a broker failure, answer 503 at once for this long (no thread pile-up)


class BrokerUnavailable(Unavailable):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the event log is unavailable; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s

    def answer(self, consequence: str) -> HTTPException:
        """The 503 to answer, with ``Retry-After``; ``consequence``: what was not done."""
        retry_after = str(max(1, math.ceil(self.retry_after_s)))
        return HTTPException(503, f"{self}; {consequence}", headers={"Retry-After": retry_after})


class EventProducer:
    """The app's one KafkaProducer: created at first use (the API starts without a broker),
    shared by the request threads (KafkaProducer is thread-safe), closed with the app.

    After a failure the producer is dropped (it may hold doomed batches) and for ``cooldown_s``
    every send fails at once, so an outage does not park a request thread per call for
    ``timeout_s``; the next send after that connects anew.
    """

    def __init__(
        self,
        settings: Settings,
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
        except (KafkaError, OSError) as exc:
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
                self._producer = make_producer(
                    self.settings,
                    client_id="hub-api-ingest",
                    bootstrap_timeout_ms=timeout_ms,  # the 30 s defaults would outlast a client
                    max_block_ms=timeout_ms,
                    request_timeout_ms=timeout_ms,
                    delivery_timeout_ms=timeout_ms + 1000,  # > linger + request timeout
                )
            except (KafkaError, OSError) as exc:
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
            with contextlib.suppress(KafkaError):
                producer.close(timeout=0)


_producer_lock = threading.Lock()


def event_producer(app: FastAPI) -> EventProducer:
    """The app's :class:`EventProducer` (``app.state.event_producer``), made on first use."""
    with _producer_lock:
        sink = getattr(app.state, "event_producer", None)
        if sink is None:
            sink = EventProducer(app.state.settings)
            app.state.event_producer = sink
        assert isinstance(sink, EventProducer)
        return sink
