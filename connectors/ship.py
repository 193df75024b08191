"""Events -> durable outbox -> Kafka, once per connector run, with the counts in the report.

The events are committed to the outbox (one transaction) before any of it is handed to the
producer; rows leave the outbox only once the broker acknowledged them. Events an earlier run
left behind are sent first, and one of them that this run converted again is not sent twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from connectors.outbox import Outbox
from connectors.publisher import Publisher
from connectors.report import ConnectorReport
from connectors.settings import ConnectorSettings
from geo.tiles import event_key
from schemas.event import Event


class Shipment:
    """One run's sending: ``submit`` chunks of events, then ``finish``."""

    def __init__(
        self, settings: ConnectorSettings, outbox: Outbox, report: ConnectorReport, max_wait: float
    ) -> None:
        self.settings, self.outbox, self.report = settings, outbox, report
        self.publisher = Publisher(settings, outbox, max_wait=max_wait)
        acked_before = outbox.acked()
        self.publisher.start()
        # Events an earlier run left pending and start() just delivered: when this run holds
        # them too they are this run's events, already in Kafka; not sent twice.
        self.sent_first = outbox.acked_ids(acked_before, self.publisher.boundary)

    def submit(self, events: list[Event], on_durable: Callable[[], None] | None = None) -> None:
        fresh = [e for e in events if e.event_id.bytes not in self.sent_first]
        self.report.events_produced += len(events) - len(fresh)
        records = self.outbox.put(self._records(fresh))
        if on_durable is not None:
            on_durable()  # e.g. a cursor saved only once the events are safe in the outbox
        self.publisher.submit(records)

    def finish(self) -> None:
        self.publisher.drain()
        report, acked = self.report, self.publisher.acked
        report.earlier_delivered = acked.old - report.events_produced
        report.events_produced += acked.new
        report.pending = self.outbox.count()
        report.broker_error = None if report.delivered else self.publisher.last_error

    def close(self) -> None:
        self.publisher.close()

    def _records(self, events: Iterable[Event]) -> Iterator[tuple[uuid.UUID, bytes, bytes]]:
        zoom = self.settings.tile_zoom
        return ((e.event_id, event_key(e, zoom), e.to_json()) for e in events)


def ship(
    events: list[Event],
    settings: ConnectorSettings,
    outbox_path: Path,
    report: ConnectorReport,
    *,
    max_wait: float = 30.0,
    on_durable: Callable[[], None] | None = None,
) -> None:
    """Send one list of events through the outbox at ``outbox_path``, counting in ``report``."""
    with Outbox(outbox_path) as outbox:
        shipment = Shipment(settings, outbox, report, max_wait)
        try:
            shipment.submit(events, on_durable)
            shipment.finish()
        finally:
            shipment.close()
