"""Per-field parsers of a CSV row: time, coordinates, vocabulary values, reporter pseudonym.

Each one is compiled once from the mapping and raises ``RowReject`` (a reason shared by every
row with the same problem, plus the detail of this row) instead of letting a bad cell crash
the run.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta

import numpy as np

from connectors.mapping import (
    EVENT_TYPE,
    VOCABULARIES,
    ColumnValue,
    LocationSection,
    TimeSection,
    ValueSpec,
    canonical_word,
    normalise_event_type,
)
from geo.crs import to_wgs84

# A cell: text (CSV, and every other value of a spreadsheet or database once made text) or a
# real date/datetime (a spreadsheet's date cell, a database's DATETIME), which is never turned
# into text before the time parser sees it: no format, no locale, no round trip.
Cell = str | date | None
Row = Mapping[str, Cell]


class RowReject(Exception):  # a verdict on a row, not an error of the program
    """The row cannot become an event; ``reason`` is counted, ``detail`` is for the rejects file."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def cell(row: Row, column: str, nulls: frozenset[str]) -> str | None:
    """The stripped cell, or None when it is missing or one of the null values; a date cell
    as ISO 8601 text."""
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    value = value.strip()
    return None if value in nulls else value


def time_cell(row: Row, column: str, nulls: frozenset[str]) -> str | date | None:
    """The time cell as it is: a real date stays one (see ``Cell``), text as ``cell`` gives it."""
    value = row.get(column)
    return value if isinstance(value, date) else cell(row, column, nulls)


# --- time -----------------------------------------------------------------------------------

AMBIGUOUS = "ambiguous local time (DST), fold=0 used"
NON_EXISTENT = "non-existent local time (DST gap), fold=0 used"


class TimeParser:
    """Cell -> RFC 3339 text with an explicit offset (and a DST note, if any). A cell is text
    (parsed with the mapping's ``format``, else ISO 8601) or a real date cell (no format: a
    spreadsheet's date, a database's DATETIME; a date alone is its midnight).

    Results are memoised per cell: real feeds repeat timestamps a lot (the SFPD file has
    ~4 rows per distinct minute), and strptime + zoneinfo cost more than the lookup.
    """

    def __init__(self, spec: TimeSection) -> None:
        self.format = spec.format
        self.zone = zoneinfo.ZoneInfo(spec.timezone) if spec.timezone else None
        self._memo: dict[str | date, tuple[str, str | None] | tuple[None, RowReject]] = {}

    def __call__(self, text: str | date) -> tuple[str, str | None]:
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) > 200_000:  # bounded: a file of unique timestamps gains nothing
                self._memo.clear()
            try:
                found = self._parse(text) if isinstance(text, str) else self._typed(text)
            except RowReject as exc:
                found = (None, exc)
            self._memo[text] = found
        value, extra = found
        if value is None:
            assert isinstance(extra, RowReject)
            raise RowReject(extra.reason, extra.detail)  # a fresh one: no growing traceback
        assert not isinstance(extra, RowReject)
        return value, extra

    def _typed(self, value: date) -> tuple[str, str | None]:
        parsed = value if isinstance(value, datetime) else datetime(*value.timetuple()[:3])
        return self._offset(parsed, repr(value.isoformat()))

    def _parse(self, text: str) -> tuple[str, str | None]:
        try:
            if self.format:
                parsed = datetime.strptime(text, self.format)
            else:
                parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RowReject("unparsable time", f"{text!r}: {exc}") from None
        return self._offset(parsed, repr(text))

    def _offset(self, parsed: datetime, shown: str) -> tuple[str, str | None]:
        note = None
        if parsed.tzinfo is None:
            if self.zone is None:
                raise RowReject("time without offset and no [time] timezone", shown)
            parsed, note = localise(parsed, self.zone)
        return rfc3339(parsed), note


def localise(naive: datetime, zone: zoneinfo.ZoneInfo) -> tuple[datetime, str | None]:
    """Attach ``zone`` with fold=0; say so when the wall time was ambiguous or did not exist."""
    first = naive.replace(tzinfo=zone, fold=0)
    if first.utcoffset() == naive.replace(tzinfo=zone, fold=1).utcoffset():
        return first, None
    # A wall time that does not survive the round trip through UTC fell into the spring gap.
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return first, (AMBIGUOUS if back == naive else NON_EXISTENT)


def rfc3339(ts: datetime) -> str:
    offset = ts.utcoffset() or timedelta(0)
    if offset % timedelta(minutes=1):  # historic LMT offsets have seconds RFC 3339 cannot say
        ts = ts.astimezone(UTC)
    return ts.isoformat()


# --- coordinates ----------------------------------------------------------------------------

_NUMBER_SEP = re.compile(r"[,\s;]+")


class PointParser:
    """Cells -> raw (x, y) in the mapping's CRS: x is longitude/easting, y latitude/northing."""

    def __init__(self, spec: LocationSection, nulls: frozenset[str]) -> None:
        self.spec = spec
        self.nulls = nulls

    def __call__(self, row: Row) -> tuple[float, float]:
        if self.spec.point is not None:
            x, y = self._split(cell(row, self.spec.point, self.nulls))
        else:
            assert self.spec.lon is not None and self.spec.lat is not None  # mapping checks it
            x = _number(cell(row, self.spec.lon, self.nulls))
            y = _number(cell(row, self.spec.lat, self.nulls))
        if not (math.isfinite(x) and math.isfinite(y)):
            raise RowReject("non-finite coordinates", f"x={x}, y={y}")
        if x == 0 and y == 0:  # the usual placeholder of a missing position, in any CRS
            raise RowReject("coordinates at 0,0")
        return x, y

    def _split(self, text: str | None) -> tuple[float, float]:
        if text is None:
            raise RowReject("missing coordinates")
        parts = [p for p in _NUMBER_SEP.split(text.strip("()[] ")) if p]
        if len(parts) != 2:
            raise RowReject("unparsable coordinates", repr(text))
        a, b = _number(parts[0]), _number(parts[1])
        return (b, a) if self.spec.order == "latlon" else (a, b)


def _number(text: str | None) -> float:
    if text is None:
        raise RowReject("missing coordinates")
    try:
        return float(text)
    except ValueError:
        raise RowReject("unparsable coordinates", repr(text)) from None


def check_lonlat(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise RowReject("non-finite coordinates", f"lon={lon}, lat={lat}")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise RowReject("coordinates out of range", f"lon={lon}, lat={lat}")
    if lon == 0 and lat == 0:
        raise RowReject("coordinates at 0,0")


# --- vocabulary values ----------------------------------------------------------------------


def value_resolver(name: str, spec: ValueSpec, nulls: frozenset[str]) -> Callable[[Row], str]:
    """A function row -> the valid value of event field ``name`` (or RowReject)."""
    if isinstance(spec, str):
        constant = _canonical(name, spec)
        assert constant is not None  # constants are checked when the mapping is loaded
        return lambda row: constant
    return _ColumnResolver(name, spec, nulls)


class _ColumnResolver:
    def __init__(self, name: str, spec: ColumnValue, nulls: frozenset[str]) -> None:
        self.name, self.spec, self.nulls = name, spec, nulls
        self.default = _canonical(name, spec.default) if spec.default is not None else None
        # Cell text -> value, seeded with the map; columns like a category repeat a handful of
        # values, so each distinct one is canonicalised once (unmatched ones stay uncached).
        self.known = {k: _canonical(name, v) or "" for k, v in spec.map.items()}

    def __call__(self, row: Row) -> str:
        raw = cell(row, self.spec.column, self.nulls)
        if raw is None:
            if self.default is None:
                raise RowReject(f"missing {self.name}", f"column {self.spec.column!r} is empty")
            return self.default
        value = self.known.get(raw)
        if value is None:
            value = self._resolve(raw)
            if len(self.known) < 10_000:
                self.known[raw] = value
        return value

    def _resolve(self, raw: str) -> str:
        if self.spec.unmapped == "default" and self.default is not None:
            return self.default
        value = _canonical(self.name, raw)
        if value is not None:
            return value
        if self.default is not None and self.name == "event_type":
            return self.default
        raise RowReject(f"invalid {self.name}", f"{raw!r} is not {_expected(self.name)}")


def _canonical(name: str, value: str) -> str | None:
    if name == "event_type":
        return value if EVENT_TYPE.match(value) else normalise_event_type(value)
    return canonical_word(name, value)


def _expected(name: str) -> str:
    if name == "event_type":
        return "usable as an event_type code"
    return "one of " + ", ".join(VOCABULARIES[name])


# --- reporter -------------------------------------------------------------------------------


def pseudonym(key: bytes, system: str, reporter: str) -> str:
    """Stable, unlinkable without the key: HMAC-SHA256 over (system, reporter)."""
    digest = hmac.new(key, f"{system}\x1f{reporter}".encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


# --- CRS ------------------------------------------------------------------------------------

LonLatArrays = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def lonlat_arrays(crs: str) -> LonLatArrays:
    """Vectorised (x, y) -> (lon, lat): pyproj takes arrays; the GCJ-02/BD-09 inversions are
    iterative scalar code, applied point by point."""
    convert = to_wgs84(crs)
    if crs.strip().upper().replace("_", "-") not in {"GCJ-02", "BD-09"}:

        def vectorised(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lon, lat = convert(x, y)  # type: ignore[arg-type]  # pyproj broadcasts arrays
            return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)

        return vectorised

    def pointwise(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs = [convert(float(a), float(b)) for a, b in zip(x, y, strict=True)]
        out = np.asarray(pairs, dtype=float).reshape(-1, 2)
        return out[:, 0], out[:, 1]

    return pointwise
