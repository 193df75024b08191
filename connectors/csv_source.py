"""CSV source: read a file and turn its rows into hub events, with a reason for every reject.

``convert_rows`` is pure (no Kafka, no database; communities from the polygons it is given): the
connector run (``connectors.run``) feeds it chunks of rows and ships what it returns.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import ValidationError

from connectors.fields import (
    PointParser,
    Row,
    RowReject,
    TimeParser,
    cell,
    check_lonlat,
    lonlat_arrays,
    pseudonym,
    time_cell,
    value_resolver,
)
from connectors.mapping import VOCABULARIES, Mapping
from geo.assign import CommunityIndex
from hub.errors import InvalidInput
from schemas.event import Event

TextRow = dict[str, str | None]  # a CSV row: every cell text (a ``Row`` of the converter)

# Fixed namespace of connector event ids: uuid5(NAMESPACE, f"{system}/{row_id}"). Never change
# it, or a replay would no longer recognise the events it already sent.
NAMESPACE = uuid.UUID("5a95dea2-7f76-48bd-8bf1-0fe167fd3195")


class SourceError(InvalidInput, RuntimeError):
    """The CSV file cannot be read (the message says where and why)."""


def event_id_for(system: str, row_id: str) -> uuid.UUID:
    # "/" cannot occur in a system name (the mapping forbids it), so the pair is unambiguous.
    return uuid.uuid5(NAMESPACE, f"{system}/{row_id}")


def snake_case(name: str) -> str:
    """``"Incident ID"`` -> ``incident_id``, ``"CallNumber"`` -> ``call_number``."""
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(ch.lower() if ch.isalnum() else "_")
    return "_".join(p for p in "".join(out).split("_") if p) or "column"


@dataclass(frozen=True, slots=True)
class Reject:
    row: int  # 1-based data row number (the header is row 0)
    values: Row
    reason: str
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class Conversion:
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)  # e.g. DST folds, per kind
    unassigned: int = 0  # events without a community (no column value, no polygon)


@dataclass(slots=True)
class _Parsed:
    row_no: int
    row: Row
    row_id: str
    x: float
    y: float
    observed_at: str
    fields: dict[str, str]
    community: str | None
    reporter: str | None
    properties: dict[str, Any]


class RowConverter:
    """Compiled once per mapping; keeps the row ids seen so far (duplicates across chunks)."""

    def __init__(
        self,
        mapping: Mapping,
        *,
        communities: CommunityIndex | None = None,
        reporter_key: bytes | None = None,
        kind: str = "csv",
    ) -> None:
        if mapping.source.reporter and not reporter_key:
            raise ValueError("[source] reporter needs a pseudonymisation key (HUB_REPORTER_KEY)")
        self.mapping = mapping
        self.nulls = frozenset(mapping.null_values(kind))
        self.time = TimeParser(mapping.time)
        self.point = PointParser(mapping.location, self.nulls)
        self.to_lonlat = lonlat_arrays(mapping.location.crs)
        names = (*VOCABULARIES, "event_type")
        self.values = {n: value_resolver(n, getattr(mapping.event, n), self.nulls) for n in names}
        self.properties = [(c, snake_case(c)) for c in mapping.properties.columns]
        self.reporter_key = reporter_key
        self.seen: dict[str, int] = {}
        self.communities = communities
        self.connector = mapping.source.connector or kind  # source.connector of the events

    def convert(self, rows: Iterable[Row], first_row: int = 1) -> Conversion:
        out = Conversion()
        parsed: list[_Parsed] = []
        for n, row in enumerate(rows, start=first_row):
            try:
                parsed.append(self._parse(n, row, out.notes))
            except RowReject as exc:
                out.rejects.append(Reject(n, row, exc.reason, exc.detail))
        parsed = self._locate(parsed, out)
        self._assign(parsed)
        for p in parsed:
            self._build(p, out)
        out.rejects.sort(key=lambda r: r.row)
        return out

    def _parse(self, n: int, row: Row, notes: Counter[str]) -> _Parsed:
        m, nulls = self.mapping, self.nulls
        row_id = cell(row, m.source.id, nulls)
        if row_id is None:
            raise RowReject("missing row id", f"column {m.source.id!r} is empty")
        first = self.seen.setdefault(row_id, n)
        if first != n:
            raise RowReject("duplicate row id", f"{row_id!r} already on row {first}")
        x, y = self.point(row)
        when = time_cell(row, m.time.column, nulls)
        if when is None:
            raise RowReject("missing time", f"column {m.time.column!r} is empty")
        observed_at, note = self.time(when)
        if note:
            notes[note] += 1
        fields = {name: resolve(row) for name, resolve in self.values.items()}
        community = cell(row, m.community.column, nulls) if m.community.column else None
        reporter = cell(row, m.source.reporter, nulls) if m.source.reporter else None
        props: dict[str, Any] = {"row_id": row_id}
        for column, key in self.properties:
            value = cell(row, column, nulls)
            if value is not None:
                props[key] = value
        return _Parsed(n, row, row_id, x, y, observed_at, fields, community, reporter, props)

    def _locate(self, parsed: list[_Parsed], out: Conversion) -> list[_Parsed]:
        """Convert every point to WGS84 in one vectorised call; reject what lands nowhere."""
        if not parsed:
            return parsed
        xs = np.fromiter((p.x for p in parsed), float, len(parsed))
        ys = np.fromiter((p.y for p in parsed), float, len(parsed))
        lon, lat = self.to_lonlat(xs, ys)
        kept = []
        for p, lo, la in zip(parsed, lon.tolist(), lat.tolist(), strict=True):
            try:
                check_lonlat(lo, la)
            except RowReject as exc:
                out.rejects.append(Reject(p.row_no, p.row, exc.reason, exc.detail))
                continue
            p.x, p.y = lo, la
            kept.append(p)
        return kept

    def _assign(self, parsed: list[_Parsed]) -> None:
        """Fill missing communities from the polygons (or the nearest within the index's
        snapping distance, as fusion does), in one vectorised pass."""
        todo = [p for p in parsed if p.community is None]
        if self.communities is None or not todo:
            return
        lon, lat = np.array([p.x for p in todo]), np.array([p.y for p in todo])
        for p, (cid, snapped_m) in zip(todo, self.communities.place_ids(lon, lat), strict=True):
            p.community = cid
            if snapped_m is not None:  # outside every polygon, within the index's snap_m
                p.properties["snapped_m"] = snapped_m

    def _build(self, p: _Parsed, out: Conversion) -> None:
        m = self.mapping
        source = {"system": m.source.system, "connector": self.connector}
        reporter = None
        if p.reporter is not None and self.reporter_key:
            reporter = pseudonym(self.reporter_key, m.source.system, p.reporter)
        try:
            event = Event(
                event_id=event_id_for(m.source.system, p.row_id),
                community_id=p.community,
                source={**source, "reporter": reporter},
                geometry={"type": "Point", "coordinates": (p.x, p.y)},
                observed_at=p.observed_at,
                properties=p.properties,
                **p.fields,
            )
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            out.rejects.append(Reject(p.row_no, p.row, "invalid event", detail))
            return
        out.events.append(event)
        if event.community_id is None:
            out.unassigned += 1


def convert_rows(
    rows: Iterable[Row],
    mapping: Mapping,
    *,
    communities: CommunityIndex | None = None,
    reporter_key: bytes | None = None,
) -> Conversion:
    """Convert rows (dicts of column -> cell) in one go: events, rejects, notes, unassigned."""
    return RowConverter(mapping, communities=communities, reporter_key=reporter_key).convert(rows)


# --- reading and writing --------------------------------------------------------------------


@contextmanager
def open_csv(path: Path, mapping: Mapping) -> Iterator[tuple[list[str], Iterator[TextRow]]]:
    """The header and a row iterator; unreadable files raise ``SourceError``."""
    try:
        handle = path.open(newline="", encoding=mapping.csv.encoding)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    with handle:
        reader = csv.DictReader(handle, delimiter=mapping.csv.delimiter)
        try:
            header = list(reader.fieldnames or [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: not a readable CSV file ({exc})") from exc
        if not header:
            raise SourceError(f"{path}: empty file (no header row)")
        yield header, _guarded(reader, path)


def _guarded(reader: csv.DictReader[str], path: Path) -> Iterator[TextRow]:
    try:
        yield from reader
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: unreadable after line {reader.line_num} ({exc})") from exc


def chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


class RejectsWriter:
    """The rejected rows with their original columns, plus ``_row`` and ``_reason``."""

    def __init__(self, path: Path, header: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = path.open("w", newline="", encoding="utf-8")
        self._header = header
        self._writer = csv.writer(self._handle)
        self._writer.writerow([*header, "_row", "_reason"])

    def write(self, rejects: Iterable[Reject]) -> None:
        self._writer.writerows(
            [*(r.values.get(c) or "" for c in self._header), r.row, r.text] for r in rejects
        )

    def close(self) -> None:
        self._handle.close()
