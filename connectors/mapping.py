"""The column mapping of a CSV connector: a TOML file parsed into a validated pydantic model.

Every key (``*`` = required; ``VALUE`` = a constant, or ``{column, map, default, unmapped}``):

``[source]``
  * ``system``     name of the source system (``[A-Za-z0-9][A-Za-z0-9._-]*``, at most 64
                   chars); with the row id it makes the deterministic ``event_id``, and it names
                   the outbox file.
  * ``id``         column holding a stable row id (unique in the file).
  ``connector``    the ``source.connector`` of the events (default: the kind, ``"csv"`` ...).
  ``reporter``     column naming the person who reported; published only as a pseudonym
                   (HMAC-SHA256 keyed with ``HUB_REPORTER_KEY``), never the raw value.

``[time]``
  * ``column``     column holding the observation time.
  ``format``       ``strptime`` format (e.g. ``"%Y/%m/%d %I:%M:%S %p"``); omitted = ISO 8601.
  ``timezone``     IANA zone (e.g. ``"America/Los_Angeles"``) for values carrying no offset; values
                   with an offset keep it. Without it, a time without offset is a row reject.
                   Ambiguous or non-existent local times (DST) take ``fold=0`` and are counted.

``[location]``     either ``lat`` + ``lon``, or ``point``:
  ``lat``, ``lon`` columns of latitude/northing (y) and longitude/easting (x).
  ``point``        one column holding both numbers, e.g. ``"(37.78, -122.42)"``.
  ``order``        order of the numbers in ``point``: ``"latlon"`` (default) or ``"lonlat"``.
  ``crs``          ``"EPSG:4326"`` (default), ``"GCJ-02"``, ``"BD-09"`` or any EPSG code.

``[event]``
  ``kind``         VALUE, one of incident/observation/resource/alert/verification/cancel
                   (default ``"incident"``).
  * ``category``   VALUE, a CAP category (``Geo``, ``Met``, ``Safety``, ``Security``, ``Fire`` ...).
  ``severity``     VALUE, a CAP severity (default ``"Unknown"``).
  ``urgency``      VALUE, a CAP urgency (default ``"Unknown"``).
  ``certainty``    VALUE, a CAP certainty (default ``"Unknown"``).
  ``status``       VALUE, ``actual`` (default), ``exercise`` or ``test``.
  * ``event_type`` VALUE, a short code ``^[a-z][a-z0-9_]{0,63}$``; a cell that does not fit is
                   normalised (lower case, other characters to ``_``) before falling back to
                   ``default``.

  A VALUE table: ``column`` (required) is looked up in ``map`` (cell -> value); a cell absent
  from ``map`` is kept as it is (``unmapped = "keep"``, the default) or replaced by ``default``
  (``unmapped = "default"``); an empty cell takes ``default``. CAP words are matched without
  regard to case; a cell that still is not a valid word rejects the row, with the reason.
  Constants, ``map`` values and ``default`` are checked when the mapping is loaded.

``[properties]``
  ``columns``      list of columns copied into the event ``properties`` (keys in snake_case;
                   empty cells left out). ``row_id`` is always there.

``[community]``
  ``column``       column holding the community id; an empty cell, or no column, means the
                   community is assigned from the point by the community polygons (the
                   ``--communities`` file here, else fusion with the hub's).

``[csv]``
  ``delimiter``    one character (default ``","``).
  ``encoding``     file encoding (default ``"utf-8-sig"``: UTF-8, a byte-order mark ignored).
  ``null_values``  cell values that mean "empty" (default ``[""]``), e.g. ``["", "None", "null"]``.

``[xlsx]``         the ``xlsx`` kind (.xlsx, .xlsm, .xls, .ods): every key above, plus
  ``sheet``        the sheet's name, or its 0-based position (default 0: the first sheet).
  ``header_row``   1-based row number of the header, as the spreadsheet shows it (default: the
                   first non-empty row); the data rows follow it.
  ``null_values``  as in ``[csv]`` (default: ``[csv] null_values``).

``[sql]``          the ``sql`` kind: every key above except ``[csv]``, plus
  ``url``          SQLAlchemy URL, e.g. ``"mysql+pymysql://reader@db/community"`` (the command's
                   SOURCE argument overrides it, so a password need not sit in this file).
  * ``query``      a SELECT; the connector wraps it (``SELECT * FROM (query) AS q WHERE ...``),
                   so it must not end with ``ORDER BY``/``LIMIT`` of its own.
  * ``cursor_column`` a column of the query that grows when a row is inserted or changed
                   (an ``updated_at`` timestamp, an auto-increment id); rows where it is NULL
                   are never read.
  ``lookback``     re-read this much below the saved cursor (seconds for a time cursor, units
                   for a number; default 0), for writers whose transactions commit late.
  ``null_values``  as in ``[csv]`` (default: ``[csv] null_values``).

Unknown keys are errors (with a "did you mean"), so a typo never silently drops a field.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from geo.crs import to_wgs84
from hub.configfile import Problem, StrictModel, read_toml, validate
from hub.errors import ConfigError
from schemas.event import CATEGORIES, KINDS, SEVERITIES

URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
STATUSES = ("actual", "exercise", "test")
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# Field -> the words it accepts (event_type is checked by pattern instead).
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "kind": KINDS,
    "category": CATEGORIES,
    "severity": SEVERITIES,
    "urgency": URGENCIES,
    "certainty": CERTAINTIES,
    "status": STATUSES,
}


class MappingError(ConfigError, ValueError):
    """The mapping file cannot be used; the message names the file and every problem."""


class _Section(StrictModel):
    """A table of the mapping file: unknown keys are errors (with a "did you mean")."""


Column = Annotated[str, Field(min_length=1)]


class ColumnValue(_Section):
    """A value taken from a column, translated through ``map``."""

    column: Column
    map: dict[str, str] = Field(default_factory=dict)
    default: str | None = None
    unmapped: Literal["keep", "default"] = "keep"

    @model_validator(mode="after")
    def _default_needed(self) -> Self:
        if self.unmapped == "default" and self.default is None:
            raise ValueError('unmapped = "default" needs a default')
        return self


ValueSpec = str | ColumnValue


class SourceSection(_Section):
    system: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    id: Column
    connector: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reporter: Column | None = None


class TimeSection(_Section):
    column: Column
    format: str | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value


class LocationSection(_Section):
    lat: Column | None = None
    lon: Column | None = None
    point: Column | None = None
    order: Literal["latlon", "lonlat"] = "latlon"
    crs: str = "EPSG:4326"

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str) -> str:
        try:
            to_wgs84(value)
        except Exception as exc:  # pyproj raises CRSError and friends; all mean "unusable"
            raise ValueError(f"unknown CRS {value!r} (EPSG:xxxx, GCJ-02 or BD-09)") from exc
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        pair = self.lat is not None or self.lon is not None
        if pair == (self.point is not None):
            raise ValueError("give either lat and lon, or point")
        if pair and (self.lat is None or self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class EventSection(_Section):
    kind: ValueSpec = "incident"
    category: ValueSpec
    severity: ValueSpec = "Unknown"
    urgency: ValueSpec = "Unknown"
    certainty: ValueSpec = "Unknown"
    status: ValueSpec = "actual"
    event_type: ValueSpec

    @field_validator(*VOCABULARIES, "event_type")
    @classmethod
    def _valid_words(cls, spec: ValueSpec, info: ValidationInfo) -> ValueSpec:
        problems = _check_spec(spec, str(info.field_name))
        if problems:
            raise ValueError("; ".join(problems))
        return spec


class PropertiesSection(_Section):
    columns: list[Column] = Field(default_factory=list)


class CommunitySection(_Section):
    column: Column | None = None


class CsvSection(_Section):
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    encoding: str = "utf-8-sig"
    null_values: list[str] = Field(default_factory=lambda: [""])

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        return value


class XlsxSection(_Section):
    sheet: Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1)] = 0
    header_row: Annotated[int, Field(ge=1)] | None = None
    null_values: list[str] | None = None


class SqlSection(_Section):
    url: Annotated[str, Field(min_length=1)] | None = None
    query: Annotated[str, Field(min_length=1)]
    cursor_column: Column
    lookback: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    null_values: list[str] | None = None

    @field_validator("query")
    @classmethod
    def _one_select(cls, value: str) -> str:
        body = value.strip().rstrip(";").strip()
        if ";" in body:
            raise ValueError("one statement only (no ';' inside the query)")
        return body


class Mapping(_Section):
    """A whole mapping file (see the module docstring for every key)."""

    source: SourceSection
    time: TimeSection
    location: LocationSection
    event: EventSection
    properties: PropertiesSection = Field(default_factory=PropertiesSection)
    community: CommunitySection = Field(default_factory=CommunitySection)
    csv: CsvSection = Field(default_factory=CsvSection)
    xlsx: XlsxSection = Field(default_factory=XlsxSection)
    sql: SqlSection | None = None

    def null_values(self, kind: str = "csv") -> list[str]:
        """The cell values meaning "empty": the kind's own table's, else ``[csv]``'s."""
        own = {"xlsx": self.xlsx.null_values, "sql": self.sql.null_values if self.sql else None}
        found = own.get(kind)
        return self.csv.null_values if found is None else found

    def columns(self) -> dict[str, str]:
        """Every column the mapping reads -> where it is named (for error messages)."""
        named: dict[str, str] = {}
        for where, col in self._column_refs():
            if col is not None:
                named.setdefault(col, where)
        return named

    def _column_refs(self) -> list[tuple[str, str | None]]:
        refs = [
            ("[source] id", self.source.id),
            ("[source] reporter", self.source.reporter),
            ("[time] column", self.time.column),
            ("[location] lat", self.location.lat),
            ("[location] lon", self.location.lon),
            ("[location] point", self.location.point),
            ("[community] column", self.community.column),
        ]
        for name in (*VOCABULARIES, "event_type"):
            spec = getattr(self.event, name)
            if isinstance(spec, ColumnValue):
                refs.append((f"[event] {name}", spec.column))
        refs += [("[properties] columns", c) for c in self.properties.columns]
        return refs

    def check_header(self, header: list[str], source: str) -> None:
        """Raise ``MappingError`` naming every mapped column the file does not have."""
        have = set(header)
        missing = [f"{col!r} ({where})" for col, where in self.columns().items() if col not in have]
        if missing:
            hint = ", ".join(repr(h) for h in header[:40])
            raise MappingError(f"{source}: no column {', '.join(missing)}; the file has {hint}")


def canonical_word(name: str, value: str) -> str | None:
    """The vocabulary word ``value`` stands for (case-insensitive), or None."""
    words = VOCABULARIES[name]
    if value in words:
        return value
    folded = value.casefold()
    return next((w for w in words if w.casefold() == folded), None)


def normalise_event_type(value: str) -> str | None:
    """``"Larceny Theft"`` -> ``"larceny_theft"``; None when nothing usable is left."""
    code = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")
    return code if EVENT_TYPE.match(code) else None


def _check_word(name: str, value: str) -> bool:
    if name == "event_type":
        return EVENT_TYPE.match(value) is not None
    return canonical_word(name, value) is not None


def _expected(name: str) -> str:
    if name == "event_type":
        return "a code matching ^[a-z][a-z0-9_]{0,63}$"
    return "one of " + ", ".join(VOCABULARIES[name])


def _check_spec(spec: ValueSpec, name: str) -> list[str]:
    if isinstance(spec, str):
        values = [("value", spec)]
    else:
        values = [(f"map[{k!r}]", v) for k, v in spec.map.items()]
        values += [("default", spec.default)] if spec.default is not None else []
    return [
        f"{label} {value!r} is not valid: expected {_expected(name)}"
        for label, value in values
        if not _check_word(name, value)
    ]


def load_mapping(path: Path) -> Mapping:
    """Read and validate a mapping file; raises ``MappingError`` with every problem found."""
    return parse_mapping(read_toml(path, MappingError, "the mapping"), str(path))


def parse_mapping(data: dict[str, Any], source: str = "mapping") -> Mapping:
    return validate(Mapping, data, source, MappingError, line=_describe, header="invalid mapping")


_UNION_MEMBERS = {"str", "ColumnValue"}


def _describe(problem: Problem) -> str | None:
    raw = [str(p) for p in problem.loc]
    # A VALUE is "constant or table": pydantic reports both union members; keep the one the
    # user meant (a table when they wrote a table), and drop the member names from the path.
    if "str" in raw and isinstance(problem.input, dict):
        return None
    if problem.kind == "model_type" and any("ColumnValue" in p for p in raw):
        return None  # the tag may be "function-after[_default_needed(), ColumnValue]"
    loc = [p for p in raw if p not in _UNION_MEMBERS and not p.startswith("function-")]
    if problem.kind == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown section [{loc[0]}]{problem.hint}"
        return f"{_where(loc[:-1])}: unknown key {loc[-1]!r}{problem.hint}"
    if problem.kind == "missing":
        return f"{_where(loc[:-1])}: required key {loc[-1]!r} missing"
    return f"{_where(loc)}: {problem.text}"


def _where(loc: list[str]) -> str:
    if not loc:
        return "mapping"
    return f"[{loc[0]}]" + (" " + ".".join(loc[1:]) if len(loc) > 1 else "")
