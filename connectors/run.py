"""One connector run: rows -> events -> durable outbox -> Kafka, with a report.

Each chunk of converted events is committed to the outbox (one transaction) before any of it
is handed to the producer; rows leave the outbox only once the broker acknowledged them.
Events an earlier run left behind are sent first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from connectors.csv_source import (
    Conversion,
    RejectsWriter,
    Row,
    RowConverter,
    chunks,
    open_csv,
)
from connectors.mapping import Mapping
from connectors.outbox import Outbox, default_outbox_path
from connectors.report import ConnectorReport
from connectors.settings import ConnectorSettings
from connectors.ship import Shipment
from geo.assign import CommunityIndex
from hub.errors import ConfigError

CHUNK_ROWS = 20_000  # rows converted, committed to the outbox and sent together


class ConnectorConfigError(ConfigError, ValueError):
    """The run is not configured well enough to start (the message says what to set)."""


@dataclass
class RunOptions:
    # Polygons to fill a missing community locally; None: events go without one and fusion
    # assigns it from the hub's polygons.
    communities: CommunityIndex | None = None
    rejects_path: Path | None = None
    outbox_path: Path | None = None  # None: state_dir/outbox/{system}.sqlite
    max_wait: float = 30.0  # total seconds to keep retrying an unreachable broker
    chunk_rows: int = CHUNK_ROWS
    on_progress: Callable[[int], None] | None = None  # called with the rows read so far


def run_csv(
    path: Path,
    mapping: Mapping,
    settings: ConnectorSettings,
    *,
    communities: CommunityIndex | None = None,
    rejects_path: Path | None = None,
    outbox_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_wait: float = 30.0,
    chunk_rows: int = CHUNK_ROWS,
) -> ConnectorReport:
    """Replay a CSV file through the outbox into ``settings.events_topic``.

    Raises ``SourceError``/``MappingError`` when the file or mapping cannot be used,
    ``ConnectorConfigError`` when a setting is missing (``HUB_REPORTER_KEY``) and ``OutboxBusy``
    when another process holds the outbox; a broker that never answers is not an exception:
    the report says what is left in the outbox (``report.delivered``, ``report.pending``).
    """
    options = RunOptions(communities, rejects_path, outbox_path, max_wait, chunk_rows, on_progress)
    return CsvRun(path, mapping, settings, options).run()


class CsvRun:
    def __init__(
        self, path: Path, mapping: Mapping, settings: ConnectorSettings, options: RunOptions
    ) -> None:
        self.path, self.mapping, self.settings, self.options = path, mapping, settings, options
        self.outbox_path = options.outbox_path or default_outbox_path(
            settings.state_dir, mapping.source.system
        )
        key = settings.reporter_key.get_secret_value() if settings.reporter_key else ""
        if mapping.source.reporter and not key:
            raise ConnectorConfigError(
                "the mapping names a [source] reporter column: set HUB_REPORTER_KEY so "
                "reporters are published only as pseudonyms"
            )
        self.reporter_key = key.encode() or None

    def run(self) -> ConnectorReport:
        started = time.monotonic()
        report = ConnectorReport(str(self.path), self.mapping.source.system, str(self.outbox_path))
        with open_csv(self.path, self.mapping) as (header, rows):
            self.mapping.check_header(header, str(self.path))
            rejects = (
                RejectsWriter(self.options.rejects_path, header)
                if self.options.rejects_path
                else None
            )
            try:
                with Outbox(self.outbox_path) as outbox:
                    self._ship(rows, outbox, rejects, report)
            finally:
                if rejects is not None:
                    rejects.close()
        report.elapsed_s = time.monotonic() - started
        return report

    def _ship(
        self,
        rows: Iterable[Row],
        outbox: Outbox,
        rejects: RejectsWriter | None,
        report: ConnectorReport,
    ) -> None:
        converter = RowConverter(
            self.mapping, communities=self.options.communities, reporter_key=self.reporter_key
        )
        shipment = Shipment(self.settings, outbox, report, self.options.max_wait)
        try:
            for chunk in chunks(rows, self.options.chunk_rows):
                shipment.submit(self._convert(converter, chunk, report, rejects).events)
                if self.options.on_progress is not None:
                    self.options.on_progress(report.rows_read)
            shipment.finish()
        finally:
            shipment.close()

    def _convert(
        self,
        converter: RowConverter,
        chunk: list[Row],
        report: ConnectorReport,
        rejects: RejectsWriter | None,
    ) -> Conversion:
        conv = converter.convert(chunk, first_row=report.rows_read + 1)
        report.rows_read += len(chunk)
        report.rejected += len(conv.rejects)
        report.reasons.update(r.reason for r in conv.rejects)
        report.notes.update(conv.notes)
        report.unassigned += conv.unassigned
        if rejects is not None:
            rejects.write(conv.rejects)
        return conv
