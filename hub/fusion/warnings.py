"""Warnings in fusion: sensor observations checked against their thresholds, and warning
incidents flagged to the neighbouring communities. Two stages (``hub.fusion.stages``):

1. ``ThresholdStage`` (before the incident stage): the batch's new observations of a configured
   type, per sensor in observed_at order, move the sensor's level (``thresholds.step``, with
   hysteresis; the level lives in ``sensor_state``). A rise stores a derived ``alert`` event and
   notes its id in ``fusion_new``, so the incident stage correlates it with people's reports
   like any other report. Its id is uuid5(observation, level): a replay makes the same event.
   A rise within an episode (yellow -> red without falling back to normal) refs the episode's
   earlier warning, so the escalation joins the same incident however long it took.
2. ``WarningFlagStage`` (after the incident stage): for the incidents the batch changed,
   ``incident.warning`` (a live member of kind alert) and ``incident.neighbours`` (the other
   communities within the neighbour distance of a warning, geodesic), in one statement.

Bad data in one observation (no number, another unit) is logged and left out; it never fails
the batch.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hub.fusion.stages import Batch
from hub.fusion.thresholds import (
    SEVERITY,
    ThresholdRule,
    Thresholds,
    step,
    warning_id,
)
from hub.store.frames import pg_array
from schemas.picture import DERIVED_ALERT_CONNECTOR, NORMAL

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (status, sensor, observation event_type): sensor_state's key

_NEW = """
SELECT e.event_id, e.status, e.event_type, e.community_id, e.observed_at, e.source_system,
    e.reporter, e.properties
FROM fusion_new n JOIN event e ON e.event_id = n.event_id
WHERE e.kind = 'observation' AND e.event_type = ANY(%(types)s)
ORDER BY e.observed_at, e.seq
"""

_STATES = """
SELECT s.status, s.sensor, s.event_type, s.community_id, s.level, s.value, s.observed_at,
    s.event_id, s.warning_event_id
FROM unnest(%(status)s::text[], %(sensor)s::text[], %(event_type)s::text[])
    AS k(status, sensor, event_type)
JOIN sensor_state s USING (status, sensor, event_type)
"""

_SAVE_STATES = """
INSERT INTO sensor_state AS s (status, sensor, event_type, community_id, level, value,
    observed_at, event_id, warning_event_id)
SELECT * FROM unnest(%(status)s::text[], %(sensor)s::text[], %(event_type)s::text[],
    %(community_id)s::text[], %(level)s::text[], %(value)s::float8[],
    %(observed_at)s::timestamptz[], %(event_id)s::uuid[], %(warning_event_id)s::uuid[])
ON CONFLICT (status, sensor, event_type) DO UPDATE SET
    community_id = EXCLUDED.community_id, level = EXCLUDED.level, value = EXCLUDED.value,
    observed_at = EXCLUDED.observed_at, event_id = EXCLUDED.event_id,
    warning_event_id = EXCLUDED.warning_event_id
"""

# The warning takes the observation's place, time, picture, source and Kafka position (the
# position is where the hub learnt of it: replaying from there derives it again).
_INSERT_WARNINGS = """
WITH w AS (
    SELECT * FROM unnest(%(observation)s::uuid[], %(id)s::uuid[], %(event_type)s::text[],
        %(severity)s::text[], %(properties)s::jsonb[], %(escalates)s::uuid[])
        AS w(observation, id, event_type, severity, properties, escalates)
), ins AS (
    INSERT INTO event (event_id, community_id, kind, category, severity, urgency, certainty,
        status, event_type, observed_at, geom, source_system, source_connector, reporter,
        properties, refs, sent_at, kafka_partition, kafka_offset, grid_cell)
    SELECT w.id, o.community_id, 'alert', o.category, w.severity, 'Immediate', 'Observed',
        o.status, w.event_type, o.observed_at, o.geom, o.source_system, %(connector)s,
        o.reporter, w.properties,
        CASE WHEN w.escalates IS NULL THEN '{}'::uuid[] ELSE ARRAY[w.escalates] END,
        o.sent_at, o.kafka_partition, o.kafka_offset, o.grid_cell
    FROM w JOIN event o ON o.event_id = w.observation
    ORDER BY o.seq
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
INSERT INTO fusion_new (event_id) SELECT event_id FROM ins
"""

# warning: a live member of kind alert. neighbours: of a warning, the communities it is not in
# whose area lies within the distance (geodesic, on the spheroid). A city has tens to hundreds
# of communities, and only warnings are measured: no index is needed for this.
_FLAGS = """
WITH c AS (
    SELECT DISTINCT id FROM unnest(%(ids)s::uuid[]) AS c(id)
), f AS (  -- alerts: the incident's live members of kind alert (kept by the incident stage)
    SELECT i.id, i.communities, i.geom, i.alerts > 0 AS warning
    FROM c JOIN incident i ON i.id = c.id
), wanted AS (
    SELECT f.id, f.warning, CASE WHEN f.warning THEN ARRAY(
        SELECT c.id FROM community c
        WHERE c.id <> ALL (f.communities)
            AND ST_DWithin(geography(c.geom), geography(f.geom), %(distance)s)
        ORDER BY c.id) ELSE '{}'::text[] END AS neighbours
    FROM f
)
SELECT w.id, w.warning, w.neighbours FROM wanted w JOIN incident i ON i.id = w.id
WHERE (i.warning, i.neighbours) IS DISTINCT FROM (w.warning, w.neighbours)
"""

# Only the rows whose flags change (warnings are few): the read above locks and rewrites none.
_SET_FLAGS = """
UPDATE incident SET warning = %s, neighbours = %s, updated_seq = nextval('incident_update_seq')
WHERE id = %s
"""


# --- the pure part: readings -> levels and warnings -------------------------------------------


@dataclass(frozen=True, slots=True)
class Track:
    """Where a sensor stands (a row of ``sensor_state``)."""

    community_id: str
    level: str
    value: float | None
    observed_at: datetime
    event_id: uuid.UUID  # the observation that set it
    warning_event_id: uuid.UUID | None  # the warning of the current episode (None: normal)


@dataclass(frozen=True, slots=True)
class Raised:
    """A warning to store: an observation that took its sensor up a level."""

    observation_id: uuid.UUID
    level: str
    value: float
    sensor: str
    rule: ThresholdRule
    escalates: uuid.UUID | None  # the episode's earlier warning, which this one updates

    @property
    def event_id(self) -> uuid.UUID:
        return warning_id(self.observation_id, self.level)

    def properties(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "value": self.value,
            "limit": self.rule.limit(self.level),
            "unit": self.rule.unit,
            "sensor": self.sensor,
            "observation_id": str(self.observation_id),
            "threshold_source": self.rule.source,
        }


@dataclass
class Outcome:
    tracks: dict[Key, Track] = field(default_factory=dict)  # the sensors that moved
    raised: list[Raised] = field(default_factory=list)
    skipped: int = 0  # observations without a usable number


def sensor_of(row: Mapping[str, Any]) -> str:
    """``<source system>/<properties.sensor_id, else the reporter, else "-">``."""
    sensor_id = (row.get("properties") or {}).get("sensor_id")
    if isinstance(sensor_id, bool) or not isinstance(sensor_id, str | int) or sensor_id == "":
        sensor_id = row.get("reporter") or "-"
    return f"{row['source_system']}/{sensor_id}"


def reading(row: Mapping[str, Any], rule: ThresholdRule) -> float | None:
    """The observation's number for ``rule``; None (logged) when it has none we can use."""
    props = row.get("properties") or {}
    value = _number(props.get(rule.property))
    if value is None:
        problem = f"properties.{rule.property} is not a number: {props.get(rule.property)!r}"
    elif props.get("unit", rule.unit) != rule.unit:
        problem = f"unit {props['unit']!r}, the thresholds are in {rule.unit!r}"
    else:
        return value
    log.warning(
        "observation skipped by the thresholds: %s",
        problem[:200],
        extra={"event_id": str(row["event_id"]), "event_type": row["event_type"]},
    )
    return None


def _number(value: Any) -> float | None:
    """A JSON number as a finite float (true/false are not numbers; 1e999 or 10**400 are not
    finite readings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def evaluate(
    rows: Iterable[Mapping[str, Any]], known: Mapping[Key, Track], thresholds: Thresholds
) -> Outcome:
    """The levels and warnings that the observations ``rows`` (event rows, in arrival order)
    give, from the sensors' ``known`` states. Each sensor's readings are taken in observed_at
    order; one older than the sensor's state changes nothing."""
    out = Outcome()
    for row in sorted(rows, key=lambda r: r["observed_at"]):  # stable: ties keep arrival order
        rule = thresholds.rule(row["event_type"], row["community_id"])
        if rule is None:
            continue  # a type with rules for other communities only
        value = reading(row, rule)
        if value is None:
            out.skipped += 1
            continue
        sensor = sensor_of(row)
        key = (row["status"], sensor, row["event_type"])
        track = out.tracks.get(key) or known.get(key)
        if track is not None and row["observed_at"] < track.observed_at:
            continue  # late: the sensor has moved on since
        level, raised = step(track.level if track else None, value, rule)
        episode = track.warning_event_id if track is not None else None
        if raised:
            warning = Raised(row["event_id"], level, value, sensor, rule, episode)
            out.raised.append(warning)
            episode = warning.event_id
        out.tracks[key] = Track(
            row["community_id"],
            level,
            value,
            row["observed_at"],
            row["event_id"],
            None if level == NORMAL else episode,
        )
    return out


# --- the stages -------------------------------------------------------------------------------


@dataclass
class ThresholdCounts:
    observations: int = 0
    skipped: int = 0
    raised: int = 0  # warnings derived
    stored: int = 0  # of them, new events (a replay stores none again)


class ThresholdStage:
    """Observations -> sensor levels -> derived warnings (not thread-safe: one per sink)."""

    name = "thresholds"

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.types = thresholds.event_types

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing to prepare: the stage writes straight into its tables."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> ThresholdCounts:
        """Call inside the batch's transaction, after its events were inserted and their ids
        put into ``fusion_new``, before the incident stage."""
        counts = ThresholdCounts()
        if not self.types or (batch is not None and batch.lacks(("observation",), self.types)):
            return counts
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_NEW, {"types": self.types}).fetchall()
            if not rows:
                return counts
            keys = sorted({(r["status"], sensor_of(r), r["event_type"]) for r in rows})
            known = {
                (s["status"], s["sensor"], s["event_type"]): _track(s)
                for s in cur.execute(_STATES, _columns(keys, "status", "sensor", "event_type"))
            }
        outcome = evaluate(rows, known, self.thresholds)
        counts.observations, counts.skipped = len(rows), outcome.skipped
        counts.raised = len(outcome.raised)
        counts.stored = _insert_warnings(conn, outcome.raised)
        if counts.stored and batch is not None:
            batch.added_events()
        _save_states(conn, outcome.tracks)
        return counts


class WarningFlagStage:
    """The warning flag and the neighbours of the incidents a batch changed."""

    name = "warning_flags"

    def __init__(self, neighbour_distance_m: float) -> None:
        self.distance_m = neighbour_distance_m

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing to prepare."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> int:
        """After the incident stage; returns how many incidents' flags changed."""
        if batch is None or not batch.changed_incidents:
            return 0
        params = {"ids": pg_array(sorted(batch.changed_incidents)), "distance": self.distance_m}
        changed = conn.execute(_FLAGS, params).fetchall()
        with conn.cursor() as cur:
            cur.executemany(_SET_FLAGS, [(w, n, i) for i, w, n in changed])
        return len(changed)


# --- SQL helpers ------------------------------------------------------------------------------


def _track(row: Mapping[str, Any]) -> Track:
    return Track(
        row["community_id"],
        row["level"],
        row["value"],
        row["observed_at"],
        row["event_id"],
        row["warning_event_id"],
    )


def _columns(rows: Iterable[tuple[Any, ...]], *names: str) -> dict[str, list[Any]]:
    """Rows as one list per column, for ``unnest`` (one statement, whatever the batch size)."""
    columns: list[list[Any]] = [[] for _ in names]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return dict(zip(names, columns, strict=True))


def _insert_warnings(conn: psycopg.Connection[Any], raised: list[Raised]) -> int:
    if not raised:
        return 0
    rows = [
        (
            w.observation_id,
            w.event_id,
            w.rule.warning_type,
            SEVERITY[w.level],
            Jsonb(w.properties()),
            w.escalates,
        )
        for w in raised
    ]
    params = _columns(
        rows, "observation", "id", "event_type", "severity", "properties", "escalates"
    )
    cur = conn.execute(_INSERT_WARNINGS, {**params, "connector": DERIVED_ALERT_CONNECTOR})
    return cur.rowcount


def _save_states(conn: psycopg.Connection[Any], tracks: Mapping[Key, Track]) -> None:
    if not tracks:
        return
    rows = [
        (*key, t.community_id, t.level, t.value, t.observed_at, t.event_id, t.warning_event_id)
        for key, t in sorted(tracks.items())
    ]
    names = ("status", "sensor", "event_type", "community_id", "level", "value", "observed_at")
    conn.execute(_SAVE_STATES, _columns(rows, *names, "event_id", "warning_event_id"))
