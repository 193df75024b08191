"""The app's producer of events (``hub.bus.producer.EventProducer``): one per app, made at first
use, closed with the app; a broker outage answered at once with 503 and ``Retry-After``."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from hub.bus.producer import BrokerUnavailable, EventProducer

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


@asynccontextmanager
async def closing_producer(app: FastAPI) -> AsyncIterator[None]:
    """A router lifespan that closes the app's producer, if one was made, when the app stops."""
    try:
        yield
    finally:
        sink = getattr(app.state, "event_producer", None)
        if isinstance(sink, EventProducer):
            sink.close()


def publish(app: FastAPI, records: Sequence[tuple[bytes, bytes]], consequence: str) -> None:
    """Produce (key, value) records to the events topic through the app's producer and wait for
    the acknowledgements; an unavailable broker answers 503 (``consequence``: what was not
    done)."""
    try:
        event_producer(app).send(records)
    except BrokerUnavailable as exc:
        raise _unavailable(exc, consequence) from None


def _unavailable(exc: BrokerUnavailable, consequence: str) -> HTTPException:
    """The 503 to answer, with ``Retry-After``."""
    retry_after = str(max(1, math.ceil(exc.retry_after_s)))
    return HTTPException(503, f"{exc}; {consequence}", headers={"Retry-After": retry_after})
