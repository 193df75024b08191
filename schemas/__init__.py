"""Public contracts of the hub: the event schema (JSON Schema) and its pydantic mirror."""

from schemas.event import (
    EVENT_SCHEMA_PATH,
    Event,
    EventSource,
    Geometry,
    load_event_schema,
    parse_event,
)

__all__ = [
    "EVENT_SCHEMA_PATH",
    "Event",
    "EventSource",
    "Geometry",
    "load_event_schema",
    "parse_event",
]
