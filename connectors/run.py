"""One connector run: rows -> events -> durable outbox -> Kafka, with a report.

A run reads any ``RowSource`` (a CSV file, a spreadsheet's sheet, a database query); an
incremental one (``xlsx``, ``sql``) also keeps a cursor (``connectors.cursor``): rows it sent
before are skipped unless they changed, and a source's position (the SQL cursor value) is saved
after each chunk reaches the outbox, so the next run, or a daemon after a restart, resumes there.

Each chunk of converted events is committed to the outbox (one transaction) before any of it
is handed to the producer; rows leave the outbox only once the broker acknowledged them.
Events an earlier run left behind are sent first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from connectors.changes import ChangeTracker, Sifted
from connectors.csv_source import (
    Conversion,
    RejectsWriter,
    Row,
    RowConverter,
    chunks,
    open_csv,
)
from connectors.cursor import CursorStore, default_cursor_path
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
    cursor_path: Path | None = None  # incremental kinds; None: state_dir/cursor/{system}.sqlite


class RowSource(Protocol):
    """Where rows come from. ``open`` yields the header and the rows, starting where the cursor
    says (a source without a position ignores it); ``position`` is where to resume after the
    rows yielded so far (None: nothing to save, e.g. a file read whole each time)."""

    label: str

    def open(
        self, cursor: CursorStore | None
    ) -> AbstractContextManager[tuple[list[str], Iterator[Row]]]: ...

    def position(self) -> tuple[str, Any] | None: ...


class CsvFile:
    def __init__(self, path: Path, mapping: Mapping) -> None:
        self.path, self.mapping, self.label = path, mapping, str(path)

    def open(
        self, cursor: CursorStore | None
    ) -> AbstractContextManager[tuple[list[str], Iterator[Row]]]:
        return open_csv(self.path, self.mapping)

    def position(self) -> tuple[str, Any] | None:
        return None


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


class SourceRun:
    """One run of one source; ``kind`` names the events' connector, ``incremental`` keeps a
    cursor (see the module docstring)."""

    def __init__(
        self,
        source: RowSource,
        mapping: Mapping,
        settings: ConnectorSettings,
        options: RunOptions,
        *,
        kind: str = "csv",
        incremental: bool = False,
    ) -> None:
        self.source, self.mapping, self.settings, self.options = source, mapping, settings, options
        self.kind, self.incremental = kind, incremental
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
        report = ConnectorReport(
            self.source.label, self.mapping.source.system, str(self.outbox_path)
        )
        with ExitStack() as stack:
            tracker = self._tracker(stack)
            header, rows = stack.enter_context(self.source.open(tracker.store if tracker else None))
            self.mapping.check_header(header, self.source.label)
            rejects = None
            if self.options.rejects_path:
                rejects = RejectsWriter(self.options.rejects_path, header)
                stack.callback(rejects.close)
            outbox = stack.enter_context(Outbox(self.outbox_path))
            self._ship(rows, outbox, rejects, report, tracker)
        report.elapsed_s = time.monotonic() - started
        return report

    def _tracker(self, stack: ExitStack) -> ChangeTracker | None:
        if not self.incremental:
            return None
        system = self.mapping.source.system
        path = self.options.cursor_path or default_cursor_path(self.settings.state_dir, system)
        store = stack.enter_context(CursorStore(path))
        return ChangeTracker(store, self.mapping, self.mapping.null_values(self.kind))

    def _ship(
        self,
        rows: Iterable[Row],
        outbox: Outbox,
        rejects: RejectsWriter | None,
        report: ConnectorReport,
        tracker: ChangeTracker | None,
    ) -> None:
        converter = RowConverter(
            self.mapping,
            communities=self.options.communities,
            reporter_key=self.reporter_key,
            kind=self.kind,
        )
        shipment = Shipment(self.settings, outbox, report, self.options.max_wait)
        try:
            for chunk in chunks(rows, self.options.chunk_rows):
                conv = self._convert(converter, chunk, report, rejects)
                events = conv.events
                on_durable = None
                if tracker is not None:
                    sifted = tracker.sift(chunk, conv)
                    events = sifted.events
                    report.unchanged += sifted.unchanged
                    report.changed += sifted.changed
                    on_durable = self._saver(tracker, sifted)
                report.unassigned += sum(e.community_id is None for e in events)
                # the cursor is saved only once the events are in the outbox (connectors.cursor)
                shipment.submit(events, on_durable)
                if self.options.on_progress is not None:
                    self.options.on_progress(report.rows_read)
            shipment.finish()
        finally:
            shipment.close()

    def _saver(self, tracker: ChangeTracker, sifted: Sifted) -> Callable[[], None]:
        """Saves the cursor where this chunk ends (called once its events are durable)."""
        position = self.source.position()
        return lambda: tracker.save(sifted, position)

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
        if rejects is not None:
            rejects.write(conv.rejects)
        return conv


class CsvRun(SourceRun):
    def __init__(
        self, path: Path, mapping: Mapping, settings: ConnectorSettings, options: RunOptions
    ) -> None:
        super().__init__(CsvFile(path, mapping), mapping, settings, options)
