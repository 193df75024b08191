"""The ``cap`` connector kind: CAP alerts from a file, a drop folder or a feed, to hub events.

``hub connector run cap SOURCE --mapping M.toml`` runs once: SOURCE is a CAP file (a single
alert, an EDXL-DE envelope, an ``<alerts>`` wrapper or a feed document), a folder whose files
are each read once, or an http(s) Atom/RSS feed URL polled with a conditional GET. Folders
and feeds keep a cursor (``STATE_DIR/cap/SYSTEM.json``), so a second run reads only what is
new; the connector daemon calls :meth:`CapRun.poll` with its own cursor path in a loop.

Every alert is converted on its own; one that cannot become an event is counted with its
reason (and written to ``--rejects``), never sent. Events pass through the durable outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Self

import httpx
from lxml import etree

from connectors.cap.convert import AlertConverter, AlertReject
from connectors.cap.mapping import CapMapping, load_cap_mapping
from connectors.cap.source import (
    CapCursor,
    Document,
    FeedPoller,
    folder_documents,
    is_url,
    mark_done,
    read_file,
)
from connectors.cap.xmldoc import DocumentError, Found, alerts_in, parse
from connectors.csv_source import Reject, RejectsWriter
from connectors.outbox import default_outbox_path
from connectors.report import ConnectorReport
from connectors.run import RunOptions
from connectors.settings import ConnectorSettings
from connectors.ship import ship
from schemas.event import Event

log = logging.getLogger(__name__)

REJECT_COLUMNS = ["document", "found_in", "identifier", "sender"]


class CapConnector:
    def __init__(self, mapping: CapMapping, settings: ConnectorSettings) -> None:
        self.mapping, self.settings = mapping, settings

    @classmethod
    def from_mapping_file(cls, path: Path, settings: ConnectorSettings) -> Self:
        return cls(load_cap_mapping(path), settings)

    def run(self, source: Path | str, options: RunOptions) -> ConnectorReport:
        return CapRun(self.mapping, self.settings, options).run(source)


def default_cursor_path(state_dir: Path, system: str) -> Path:
    return state_dir / "cap" / f"{system}.json"


class CapRun:
    def __init__(
        self,
        mapping: CapMapping,
        settings: ConnectorSettings,
        options: RunOptions,
        *,
        cursor_path: Path | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.mapping, self.settings, self.options = mapping, settings, options
        self.converter = AlertConverter(mapping)
        self.cursor_path = cursor_path or default_cursor_path(
            settings.state_dir, mapping.source.system
        )
        self.client = client

    def run(self, source: Path | str) -> ConnectorReport:
        """One pass over ``source``; a single file is read without a cursor (a replay sends it
        again and fusion keeps it once), a folder or feed with one."""
        started = time.monotonic()
        report = ConnectorReport(str(source), self.mapping.source.system, "")
        if not is_url(source) and not Path(source).is_dir():
            events = self._convert([read_file(Path(source))], report, None)
            self._ship(events, report)
        else:
            self.poll(source, report)
        report.elapsed_s = time.monotonic() - started
        return report

    def poll(self, source: Path | str, report: ConnectorReport) -> None:
        """Read what is new in a folder or feed, put its events in the outbox, save the cursor
        (only then: a crash before it re-reads, and the outbox and fusion drop the copies),
        and send."""
        cursor = CapCursor.load(self.cursor_path)
        if is_url(source):
            with self._client() as client:
                docs = list(FeedPoller(client, cursor).poll(str(source)))
        else:
            docs = list(folder_documents(Path(source), cursor))
        events = self._convert(docs, report, cursor)
        self._ship(events, report, lambda: self._commit(cursor, docs))

    def _commit(self, cursor: CapCursor, docs: Iterable[Document]) -> None:
        for doc in docs:
            mark_done(cursor, doc)
        cursor.save(self.cursor_path)

    def _client(self) -> AbstractContextManager[httpx.Client]:
        if self.client is not None:  # a caller's client (tests, the daemon): theirs to close
            return nullcontext(self.client)
        return httpx.Client(timeout=30.0, follow_redirects=True, headers={"User-Agent": "hub-cap"})

    def _convert(
        self, docs: list[Document], report: ConnectorReport, cursor: CapCursor | None
    ) -> list[Event]:
        events: dict[str, Event] = {}
        rejects: list[Reject] = []
        for doc in docs:
            try:
                found = alerts_in(parse(doc.data))
            except DocumentError as exc:
                report.rows_read += 1
                rejects.append(
                    Reject(report.rows_read, {"document": doc.name}, exc.reason, exc.detail)
                )
                continue
            for item in found:
                event = self._one(doc, item, report, rejects)
                if event is None:
                    continue
                self._keep(event, events, report, cursor)
        report.rejected += len(rejects)
        report.reasons.update(r.reason for r in rejects)
        for r in rejects:
            log.info(
                "cap alert rejected",
                extra={
                    "document": r.values.get("document"),
                    "reason": r.reason,
                    "detail": r.detail,
                },
            )
        self._write_rejects(rejects)
        return list(events.values())

    @staticmethod
    def _keep(
        event: Event, events: dict[str, Event], report: ConnectorReport, cursor: CapCursor | None
    ) -> None:
        """Keep a converted alert unless this run or (with a cursor) an earlier one has it;
        those are not rows of this run, only notes."""
        key = str(event.event_id)
        if key in events:  # e.g. in an envelope and in a file of its own
            report.rows_read -= 1
            report.notes["same alert twice in this run"] += 1
            return
        if cursor is not None:
            if cursor.alerts_seen.get(key) == str(event.observed_at):
                report.rows_read -= 1
                report.notes["alert already sent"] += 1
                return
            cursor.alerts_seen[key] = str(event.observed_at)
        events[key] = event
        report.unassigned += event.community_id is None

    def _one(
        self, doc: Document, item: Found, report: ConnectorReport, rejects: list[Reject]
    ) -> Event | None:
        report.rows_read += 1
        ns = item.alert.nsmap.get(None, "")
        values: dict[str, str | None] = {
            "document": doc.name,
            "found_in": item.where,
            "identifier": _child(item.alert, ns, "identifier"),
            "sender": _child(item.alert, ns, "sender"),
        }
        try:
            converted = self.converter.convert(item)
        except AlertReject as exc:
            rejects.append(Reject(report.rows_read, values, exc.reason, exc.detail))
            return None
        report.notes.update(converted.notes)
        return converted.event

    def _write_rejects(self, rejects: list[Reject]) -> None:
        if self.options.rejects_path is None:
            return
        writer = RejectsWriter(self.options.rejects_path, REJECT_COLUMNS)
        try:
            writer.write(rejects)
        finally:
            writer.close()

    def _ship(
        self,
        events: list[Event],
        report: ConnectorReport,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        outbox = self.options.outbox_path or default_outbox_path(
            self.settings.state_dir, self.mapping.source.system
        )
        report.outbox = str(outbox)
        ship(
            events,
            self.settings,
            outbox,
            report,
            max_wait=self.options.max_wait,
            on_durable=on_durable,
        )


def _child(alert: etree._Element, ns: str, name: str) -> str:
    found = alert.find(f"{{{ns}}}{name}")
    return "" if found is None else (found.text or "").strip()
