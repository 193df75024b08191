"""Pydantic mirror of ``event.v1.json``.

Validation runs in pydantic-core (compiled), so fusion can check every message with it at
tens of thousands of events per second; ``tests/test_event_contract.py`` keeps this model and
the JSON Schema in agreement.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
)

EVENT_SCHEMA_PATH = Path(__file__).with_name("event.v1.json")

RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

Kind = Literal["incident", "observation", "resource", "alert", "verification", "cancel"]
Category = Literal[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
Status = Literal["actual", "exercise", "test"]

KINDS: tuple[str, ...] = get_args(Kind)
# The source of every ``verification`` event fusion applies: the hub API's decision routes,
# which check who may rule (POST /v1/incidents/{id}/verification and /split).
DECISION_SOURCE = ("hub-api", "verification")  # (source.system, source.connector)
CATEGORIES: tuple[str, ...] = get_args(Category)
SEVERITIES: tuple[str, ...] = get_args(Severity)


def _rfc3339_text(value: Any) -> Any:
    # pydantic alone would also take unix numbers and a space separator; the contract does not.
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("observed_at must be RFC 3339 text with an explicit offset (Z or +hh:mm)")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
# strict: JSON numbers only (lax mode would take "37.7" and true as coordinates).
Lon = Annotated[float, Field(strict=True, ge=-180, le=180, allow_inf_nan=False)]
Lat = Annotated[float, Field(strict=True, ge=-90, le=90, allow_inf_nan=False)]
Alt = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Position = tuple[Lon, Lat] | tuple[Lon, Lat, Alt]


def _closed(ring: list[Position]) -> list[Position]:
    if ring[0] != ring[-1]:  # RFC 7946 3.1.6: identical values, altitude included
        raise ValueError("polygon ring is not closed (first position must equal the last)")
    return ring


Ring = Annotated[list[Position], Field(min_length=4), AfterValidator(_closed)]
PolygonCoords = Annotated[list[Ring], Field(min_length=1)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


def _finite(value: Any) -> Any:
    # pydantic's JSON parser takes NaN/Infinity literals (and 1e400 -> inf) in free-form
    # values; JSON has no such numbers, and they would be re-serialized as null.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity are not JSON numbers")
    elif isinstance(value, dict):
        for item in value.values():
            _finite(item)
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Strict):
    type: Literal["Point"]
    coordinates: Position


class LineString(_Strict):
    type: Literal["LineString"]
    coordinates: Annotated[list[Position], Field(min_length=2)]


class Polygon(_Strict):
    type: Literal["Polygon"]
    coordinates: PolygonCoords


class MultiPolygon(_Strict):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[PolygonCoords], Field(min_length=1)]


Geometry = Annotated[Point | LineString | Polygon | MultiPolygon, Field(discriminator="type")]


class EventSource(_Strict):
    system: Text
    connector: Text
    reporter: Text | None = None


class Event(_Strict):
    """A standardized hub event (``schemas/event.v1.json``)."""

    event_id: Annotated[uuid.UUID, BeforeValidator(lambda v: _uuid_text(v))]
    community_id: Text | None = None
    source: EventSource
    kind: Kind
    category: Category
    severity: Severity = "Unknown"
    urgency: Urgency = "Unknown"
    certainty: Certainty = "Unknown"
    status: Status = "actual"
    event_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    observed_at: Timestamp
    geometry: Geometry
    properties: Annotated[dict[str, Any], AfterValidator(_finite)] = Field(default_factory=dict)
    refs: Annotated[
        list[Annotated[uuid.UUID, BeforeValidator(lambda v: _uuid_text(v))]], Field(max_length=100)
    ] = Field(default_factory=list)

    def to_json(self) -> bytes:
        """Wire form: compact JSON, RFC 3339 timestamps as given (offset kept)."""
        return self.model_dump_json(exclude_none=True).encode()


_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _uuid_text(value: Any) -> Any:
    # Only the canonical hyphenated form, as the JSON Schema pattern says.
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise ValueError("must be a UUID in canonical 8-4-4-4-12 form")
    return value


_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


# An escaped NUL: \u0000 preceded by an even number of backslashes (so not "\\u0000" text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def holds_nul(raw: bytes) -> bool:
    """Whether the JSON text has a NUL character in a string. JSON allows it; PostgreSQL text
    and jsonb cannot store it, so every producer of the hub refuses such an event up front."""
    return b"\\u0000" in raw and _NUL_ESCAPE.search(raw) is not None


def parse_event(raw: bytes | str) -> Event:
    """Parse and validate one JSON event; raises ``pydantic.ValidationError``."""
    return _EVENT_ADAPTER.validate_json(raw)


@cache
def load_event_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(EVENT_SCHEMA_PATH.read_text())
    return schema


def utc_text(ts: datetime) -> str:
    """The API's timestamp form: UTC with ``Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
