"""The true incidents the simulated sources report: real ones, from the city's own records.

* SFPD: the police incident reports of December 2018, one incident per ``Incident ID`` (its
  first row in file order decides, since the rows of one incident share place and time).
* SFFD: the 1,000-row sample of fire department calls for service (January to April 2002,
  mostly medical calls), one incident per ``IncidentNumber`` at its earliest unit time, each
  row converted by the CSV connector itself with ``config/mappings/sffd-calls.toml``.

Both keep their real place, time, type and community. ``fold_days`` and ``storm`` move only
the dates (and, for a storm, squeeze the hours), never the places.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from connectors import convert_rows
from connectors.fields import value_resolver
from connectors.mapping import Mapping as CsvMapping
from connectors.mapping import load_mapping
from hub.bench.workload import ROOT, SFPD_CSV, sf_incidents
from schemas.event import Point

SFPD_MAPPING = ROOT / "config" / "mappings" / "sfpd-incidents.toml"
SFFD_CSV = ROOT / "data" / "sf" / "sf_fire_calls_sample.csv"
SFFD_MAPPING = ROOT / "config" / "mappings" / "sffd-calls.toml"
ZONE = ZoneInfo("America/Los_Angeles")
DATASETS = ("sfpd", "sffd")


@dataclass(frozen=True, slots=True)
class TrueIncident:
    incident_id: str  # SFPD "Incident ID", SFFD "IncidentNumber", or a scenario's own id
    row_id: str  # the first row of that incident in the file
    observed_at: datetime  # aware, America/Los_Angeles
    lon: float
    lat: float
    community: str  # "Analysis Neighborhood"
    event_type: str  # the connector's mapping of the incident's category or call type
    fields: tuple[tuple[str, str], ...]  # the other [event] fields the mapping gives the row
    # How it is reported (``scenarios`` sets these; the defaults are a point incident that a
    # drawn number of sources report as its own type at its place and time).
    sources: int = 0  # reports it gets; 0: drawn from GeneratorParams.sources_weights
    extent_m: float = 0.0  # reports spread uniformly over a disc of this radius (an area)
    duration_s: float = 0.0  # and uniformly over this long from observed_at (it lasts)
    report_types: tuple[str, ...] = ()  # the types its reports give, equally often; (): its own


@cache
def true_incidents(
    path: Path = SFPD_CSV, mapping_path: Path = SFPD_MAPPING
) -> tuple[TrueIncident, ...]:
    """One incident per ``Incident ID``: its first row in file order among those
    ``sf_incidents`` keeps (coordinates and a neighbourhood). Rows of one incident share place
    and time in this file; they differ in their incident code, hence the first one decides."""
    mapping = load_mapping(mapping_path)
    rows = _rows_by_id(path, mapping)
    resolve = _event_fields(mapping)
    out: dict[str, TrueIncident] = {}
    for inc in sf_incidents(path):
        row = rows[inc.row_id]
        incident_id = row["Incident ID"] or inc.row_id
        if incident_id in out:
            continue
        fields = resolve(row)
        out[incident_id] = TrueIncident(
            incident_id=incident_id,
            row_id=inc.row_id,
            observed_at=datetime.fromisoformat(inc.observed_at),
            lon=inc.lon,
            lat=inc.lat,
            community=inc.community,
            event_type=fields.pop("event_type"),
            fields=tuple(sorted(fields.items())),
        )
    return tuple(out.values())


def _rows_by_id(path: Path, mapping: CsvMapping) -> dict[str, dict[str, str | None]]:
    # sf_incidents keeps only some columns; the Incident ID and the mapped columns come from here.
    with path.open(newline="", encoding=mapping.csv.encoding) as f:
        reader = csv.DictReader(f, delimiter=mapping.csv.delimiter)
        return {row[mapping.source.id]: dict(row) for row in reader}


def _event_fields(mapping: CsvMapping) -> Callable[[dict[str, str | None]], dict[str, str]]:
    """Row -> the [event] values exactly as the CSV connector resolves them (same code)."""
    nulls = frozenset(mapping.csv.null_values)
    names = ("category", "severity", "urgency", "certainty", "status", "event_type")
    resolvers = {n: value_resolver(n, getattr(mapping.event, n), nulls) for n in names}
    return lambda row: {n: resolve(row) for n, resolve in resolvers.items()}


_FIELDS = ("category", "severity", "urgency", "certainty", "status")


@cache
def sffd_incidents(
    path: Path = SFFD_CSV, mapping_path: Path = SFFD_MAPPING
) -> tuple[TrueIncident, ...]:
    """One incident per ``IncidentNumber``, in file order, as the CSV connector converts its
    rows (the 12 rows without a time are rejected by the connector, and so left out here).

    Several units answer one call; their rows share the place and differ in the time a unit
    was available, so the incident takes the earliest, the closest the sample has to the call.
    Two rows name no neighbourhood (the literal ``None``): their polygon decides.
    """
    with path.open(newline="", encoding="utf-8") as f:
        events = convert_rows(csv.DictReader(f), load_mapping(mapping_path)).events
    first: dict[str, TrueIncident] = {}
    for e in events:
        number = str(e.properties["incident_number"])
        known = first.get(number)
        if known is not None and known.observed_at <= e.observed_at:
            continue
        if not isinstance(e.geometry, Point):  # the mapping gives points; say so if not
            raise ValueError(f"{path}: {e.properties['row_id']} is no point")
        lon, lat = e.geometry.coordinates[0], e.geometry.coordinates[1]
        first[number] = TrueIncident(
            incident_id=number,
            row_id=known.row_id if known else str(e.properties["row_id"]),
            observed_at=e.observed_at.astimezone(ZONE),
            lon=float(lon),
            lat=float(lat),
            community=e.community_id or "",
            event_type=e.event_type,
            fields=tuple((n, str(getattr(e, n))) for n in _FIELDS),
        )
    return _with_communities(tuple(first.values()))


def _with_communities(incidents: tuple[TrueIncident, ...]) -> tuple[TrueIncident, ...]:
    missing = [k for k, i in enumerate(incidents) if not i.community]
    if not missing:
        return incidents
    from hub.bench.fusion_quality.world import sf_world  # the polygons: only when needed

    lon = np.array([incidents[k].lon for k in missing])
    lat = np.array([incidents[k].lat for k in missing])
    found = dict(zip(missing, sf_world().community_of(lon, lat), strict=True))
    return tuple(
        replace(i, community=found[k]) if k in found else i for k, i in enumerate(incidents)
    )


def base_incidents(dataset: str = "sfpd", limit: int | None = None) -> tuple[TrueIncident, ...]:
    """The first ``limit`` (None: all) true incidents of ``dataset`` (``DATASETS``)."""
    if dataset == "sfpd":
        return true_incidents()[:limit]
    if dataset == "sffd":
        return sffd_incidents()[:limit]
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")


# --- moving them in time ----------------------------------------------------------------------


def fold_days(incidents: Sequence[TrueIncident], density: int) -> list[TrueIncident]:
    """The same incidents on ``density`` times fewer days: day ``k`` (counted from the first
    incident's local date) moves to day ``k // density``, wall-clock time kept."""
    if density < 1:
        raise ValueError("density must be a whole number >= 1")
    if density == 1 or not incidents:
        return list(incidents)
    first = _first_date(incidents)
    return [replace(i, observed_at=_fold(i.observed_at, first, density)) for i in incidents]


def _first_date(incidents: Sequence[TrueIncident]) -> date:
    return min(i.observed_at.astimezone(ZONE).date() for i in incidents)


def _fold(ts: datetime, first: date, density: int) -> datetime:
    local = ts.astimezone(ZONE)
    day = first + timedelta(days=(local.date() - first).days // density)
    return datetime.combine(day, local.time(), tzinfo=ZONE)


def storm(incidents: Sequence[TrueIncident], hours: float) -> list[TrueIncident]:
    """Every day's incidents at once, in ``hours``: all dates fold onto the first incident's
    local date, and the 24 hours of that day shrink linearly into its first ``hours`` (to the
    second), so the daily order is kept and the rate grows ``days x 24 / hours``-fold."""
    if not 0 < hours <= 24:
        raise ValueError("a storm lasts more than 0 and at most 24 hours")
    if not incidents:
        return []
    start = datetime.combine(_first_date(incidents), datetime.min.time(), tzinfo=ZONE)
    squeeze = hours / 24.0
    return [replace(i, observed_at=_squeezed(i.observed_at, start, squeeze)) for i in incidents]


def _squeezed(ts: datetime, start: datetime, squeeze: float) -> datetime:
    local = ts.astimezone(ZONE)
    of_day = local.hour * 3600 + local.minute * 60 + local.second  # wall clock, DST or not
    return start + timedelta(seconds=round(of_day * squeeze))
