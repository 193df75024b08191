"""Kafka records -> a validated polars frame of events, plus the rejects with their reasons.

Each message is validated by the pydantic mirror of the event schema, which runs compiled in
pydantic-core (~200k events/s on this machine); a JSON Schema check per event in Python would
cap fusion far below its target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import shapely
from pydantic import ValidationError
from shapely.geometry import shape

from schemas.event import Event, Point, holds_nul, parse_event
from schemas.resource import parse_resource

# Reasons written to the DLQ header ``hub-dlq-reason``.
NOT_JSON = "not_json"
SCHEMA = "schema_violation"
COORDINATES = "coordinates_out_of_range"
UNKNOWN_COMMUNITY = "unknown_community"
STORE_REJECTED = "store_rejected"

_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "finite_number"}


@dataclass(frozen=True)
class Reject:
    index: int  # position of the record in the polled batch
    reason: str
    detail: str


@dataclass
class Decoded:
    frame: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)


def classify(exc: ValidationError) -> tuple[str, str]:
    """Map a validation failure to a DLQ reason and a short human detail."""
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        return NOT_JSON, errors[0]["msg"]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3])
    in_coords = any("coordinates" in e["loc"] and e["type"] in _RANGE_ERRORS for e in errors)
    return (COORDINATES if in_coords else SCHEMA), detail[:500]


FRAME_SCHEMA: dict[str, Any] = {
    "idx": pl.Int64,
    "event_id": pl.String,
    "community_id": pl.String,
    "kind": pl.String,
    "category": pl.String,
    "severity": pl.String,
    "urgency": pl.String,
    "certainty": pl.String,
    "status": pl.String,
    "event_type": pl.String,
    "observed_at": pl.String,
    "source_system": pl.String,
    "source_connector": pl.String,
    "reporter": pl.String,
    "properties": pl.String,
    "refs": pl.String,
    "sent_ms": pl.Int64,
    "partition": pl.Int32,
    "offset": pl.Int64,
}


def _columns() -> dict[str, list[Any]]:
    return {name: [] for name in FRAME_SCHEMA}


def _append(cols: dict[str, list[Any]], i: int, e: Event, record: Any) -> None:
    # Serialise first: it is the one step that can still fail (an integer beyond 64 bits), and
    # it must fail before any column grew, or the columns would no longer line up.
    properties = orjson.dumps(e.properties).decode()
    src = e.source
    cols["idx"].append(i)
    cols["event_id"].append(str(e.event_id))
    cols["community_id"].append(e.community_id)
    cols["kind"].append(e.kind)
    cols["category"].append(e.category)
    cols["severity"].append(e.severity)
    cols["urgency"].append(e.urgency)
    cols["certainty"].append(e.certainty)
    cols["status"].append(e.status)
    cols["event_type"].append(e.event_type)
    cols["observed_at"].append(e.observed_at.isoformat())
    cols["source_system"].append(src.system)
    cols["source_connector"].append(src.connector)
    cols["reporter"].append(src.reporter)
    cols["properties"].append(properties)
    cols["refs"].append("{" + ",".join(str(r) for r in e.refs) + "}")
    cols["sent_ms"].append(record.timestamp)
    cols["partition"].append(record.partition)
    cols["offset"].append(record.offset)


# --- kind-specific properties ----------------------------------------------------------------
# The event schema leaves ``properties`` free; the kinds whose properties fusion itself reads are
# checked here, so that a bad one is dead-lettered with its reason instead of being stored.


def properties_problem(e: Event) -> str | None:
    """What is wrong with the event's kind-specific properties (resource events:
    ``schemas.resource``), naming the fields; None when nothing is."""
    if e.kind != "resource":
        return None
    try:
        parse_resource(e.properties)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        detail = "; ".join(
            f"properties.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3]
        )
        return f"resource {detail}"[:500]
    return None


def _shape(e: Event) -> Any:
    """The event's geometry for shapely, None for a point (built in bulk later). Raises
    ValueError for what the contract lets through but no geometry library builds: positions
    that mix 2 and 3 coordinates in one geometry."""
    if isinstance(e.geometry, Point):
        return None
    try:
        return shape(e.geometry.model_dump())
    except ValueError as exc:
        raise ValueError(
            f"geometry cannot be built ({exc}); do its positions mix 2D and 3D?"
        ) from None


def _geometry_columns(
    events: list[Event], shapes: list[Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Representative lon/lat (for assignment) and hex WKB of every geometry."""
    lon = np.empty(len(events))
    lat = np.empty(len(events))
    geoms = np.empty(len(events), dtype=object)
    for i, (e, g) in enumerate(zip(events, shapes, strict=True)):
        if g is None:
            lon[i], lat[i] = e.geometry.coordinates[0], e.geometry.coordinates[1]
        else:
            geoms[i] = g
            rp = g.representative_point()
            lon[i], lat[i] = rp.x, rp.y
    points = shapely.points(lon, lat)
    is_point = np.array([g is None for g in geoms], dtype=bool)
    geoms[is_point] = points[is_point]
    return lon, lat, list(shapely.to_wkb(geoms, hex=True))


def decode(records: Sequence[Any]) -> Decoded:
    """Validate every record; good ones become frame rows, bad ones rejects."""
    cols, events, shapes, rejects = _columns(), [], [], []
    for i, record in enumerate(records):
        value = record.value
        if value is None:
            rejects.append(Reject(i, NOT_JSON, "empty message (tombstone)"))
            continue
        if holds_nul(value):
            rejects.append(Reject(i, SCHEMA, "NUL character (\\u0000) in a string"))
            continue
        try:
            event = parse_event(value)
            problem = properties_problem(event)
            if problem is not None:
                rejects.append(Reject(i, SCHEMA, problem))
                continue
            geometry = _shape(event)  # before _append: a failure must leave the columns alone
            _append(cols, i, event, record)
        except ValidationError as exc:
            reason, detail = classify(exc)
            rejects.append(Reject(i, reason, detail))
            continue
        except (TypeError, ValueError) as exc:  # orjson: an integer beyond 64 bits; geometry
            rejects.append(Reject(i, SCHEMA, f"cannot be stored: {exc}"[:500]))
            continue
        events.append(event)
        shapes.append(geometry)
    frame = pl.DataFrame(cols, schema=FRAME_SCHEMA)
    lon, lat, wkb = _geometry_columns(events, shapes)
    frame = frame.with_columns(
        pl.Series("lon", lon, dtype=pl.Float64),
        pl.Series("lat", lat, dtype=pl.Float64),
        pl.Series("geom_wkb", wkb, dtype=pl.String),
    )
    return Decoded(frame, rejects)


def drop_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first of each event_id within the batch; returns the frame and how many went."""
    unique = frame.unique(subset="event_id", keep="first", maintain_order=True)
    return unique, frame.height - unique.height


def observed_instant() -> pl.Expr:
    """A decoded frame's ``observed_at`` (RFC 3339 text with its offset) as a UTC instant."""
    return pl.col("observed_at").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC"
    )
