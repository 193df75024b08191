"""Tables of the shared risk picture (SQLModel + GeoAlchemy2).

The migration in ``migrations/versions`` is the source of truth for DDL; these classes mirror
it for queries. Geometries are WGS84 (SRID 4326).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel


class Community(SQLModel, table=True):
    __tablename__ = "community"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    geom: Any = Field(sa_column=Column(Geometry("MULTIPOLYGON", srid=4326), nullable=False))
    repaired: bool = False
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    imported_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class GridCell(SQLModel, table=True):
    """A unit grid cell: a community's own (``<community>/<code>``) or generated
    (``h3/<index>``)."""

    __tablename__ = "grid_cell"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    community_id: str | None = None  # NULL for H3 cells: they may straddle communities
    code: str
    source: str  # imported | h3
    name: str | None = None
    geom: Any = Field(sa_column=Column(Geometry("MULTIPOLYGON", srid=4326), nullable=False))
    repaired: bool = False
    imported_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Event(SQLModel, table=True):
    """One fused event: what a community system reported, normalised."""

    __tablename__ = "event"

    seq: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), unique=True, nullable=False))
    community_id: str = Field(sa_column=Column(Text, nullable=False))
    kind: str
    category: str
    severity: str
    urgency: str
    certainty: str
    status: str
    event_type: str
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    geom: Any = Field(sa_column=Column(Geometry("GEOMETRY", srid=4326), nullable=False))
    source_system: str
    source_connector: str
    reporter: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    refs: list[uuid.UUID] = Field(default_factory=list, sa_column=Column(ARRAY(UUID(as_uuid=True))))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    ingested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    kafka_partition: int = Field(sa_column=Column(Integer, nullable=False))
    kafka_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    grid_cell: str | None = None  # NULL for events stored before grids existed


class ConsumerOffset(SQLModel, table=True):
    """Next offset to read per partition, committed with the batch that consumed it."""

    __tablename__ = "consumer_offset"

    group_id: str = Field(sa_column=Column(Text, primary_key=True))
    topic: str = Field(sa_column=Column(Text, primary_key=True))
    partition: int = Field(sa_column=Column(Integer, primary_key=True))
    next_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    topic_id: str | None = None
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class FusionStats(SQLModel, table=True):
    """Cumulative fusion counters, updated in the batch transaction (exact across crashes)."""

    __tablename__ = "fusion_stats"

    group_id: str = Field(sa_column=Column(Text, primary_key=True))
    consumed: int = Field(sa_column=Column(BigInteger, nullable=False))
    stored: int = Field(sa_column=Column(BigInteger, nullable=False))
    duplicates: int = Field(sa_column=Column(BigInteger, nullable=False))
    dlq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CommunityStats(SQLModel, table=True):
    """Per-community activity, kept by fusion so the API need not count the event log."""

    __tablename__ = "community_stats"

    community_id: str = Field(sa_column=Column(Text, primary_key=True))
    events_stored: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_event_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_observed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )


# --- incidents (migration 0005_incidents; fusion is the only writer) ---------------------------


class Incident(SQLModel, table=True):
    """Reports of one real-world incident fused into one, per picture (``status``)."""

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint("status IN ('actual', 'exercise', 'test')"),
        CheckConstraint("state IN ('open', 'closed')"),
        CheckConstraint("verification IN ('reported', 'corroborated', 'verified', 'refuted')"),
        Index("incident_geom_gist", "geom", postgresql_using="gist"),
        Index("incident_updated_seq", "updated_seq"),
        Index("incident_last_observed", "status", "last_observed_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    status: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False, server_default=text("'open'")))
    warning: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    category: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(sa_column=Column(Text, nullable=False))
    certainty: str = Field(sa_column=Column(Text, nullable=False))
    verification: str = Field(sa_column=Column(Text, nullable=False))
    decided_by: str | None = Field(default=None, sa_column=Column(Text))
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    decision_reason: str | None = Field(default=None, sa_column=Column(Text))
    sources: int = Field(sa_column=Column(Integer, nullable=False))
    reports: int = Field(sa_column=Column(Integer, nullable=False))
    communities: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    neighbours: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    # Per grid cell and community of the live members, how many (0009): the risk facts.
    grid_cells: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    cell_communities: list[str | None] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    cell_reports: list[int] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Integer), nullable=False, server_default=text("'{}'")),
    )
    alerts: int = Field(  # live members of kind alert (0009)
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    first_observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    geom: Any = Field(
        sa_column=Column(Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False)
    )
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class IncidentReport(SQLModel, table=True):
    """Which event is in which incident (``pinned``: split out by an operator; ``cancelled``:
    withdrawn by a cancel event). Both ids reference rows fusion writes in the same
    transaction, without foreign keys (migration 0007_report_keys says why)."""

    __tablename__ = "incident_report"
    __table_args__ = (Index("incident_report_incident", "incident_id"),)

    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    incident_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    pinned: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    cancelled: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    # the event's own, repeated for the candidate search (migration 0006_picture)
    status: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # the linked neighbourhood it is in, and its point (migration 0008_neighbourhoods)
    component_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    lon: float = Field(sa_column=Column(Float, nullable=False))
    lat: float = Field(sa_column=Column(Float, nullable=False))


class IncidentAlias(SQLModel, table=True):
    """An incident id that disappeared in a merge, and the incident it lives on in."""

    __tablename__ = "incident_alias"

    alias: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    incident_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))


class IncidentTimeline(SQLModel, table=True):
    """What happened to an incident (report joined, cancelled, merged...), in order."""

    __tablename__ = "incident_timeline"
    __table_args__ = (Index("incident_timeline_incident", "incident_id", "id"),)

    id: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    incident_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    what: str = Field(sa_column=Column(Text, nullable=False))
    event_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    detail: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'")),
    )


# --- the rest of the picture (migration 0006_picture; fusion is the only writer) --------------


class SensorState(SQLModel, table=True):
    """The threshold level a sensor is in now (per event type and picture)."""

    __tablename__ = "sensor_state"

    status: str = Field(sa_column=Column(Text, primary_key=True))
    sensor: str = Field(sa_column=Column(Text, primary_key=True))
    event_type: str = Field(sa_column=Column(Text, primary_key=True))
    community_id: str = Field(sa_column=Column(Text, nullable=False))
    level: str = Field(sa_column=Column(Text, nullable=False))
    value: float | None = Field(default=None, sa_column=Column(Float))
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    warning_event_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))


class PictureClock(SQLModel, table=True):
    """A picture's time: the latest observed_at fusion stored; risk decays from it."""

    __tablename__ = "picture_clock"

    status: str = Field(sa_column=Column(Text, primary_key=True))
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RiskCell(SQLModel, table=True):
    """A grid cell's risk score and four-colour level (with hysteresis), per picture."""

    __tablename__ = "risk_cell"
    __table_args__ = (
        CheckConstraint("level IN ('blue', 'yellow', 'orange', 'red')"),
        Index("risk_cell_geom_gist", "geom", postgresql_using="gist"),
        Index("risk_cell_age", "status", "as_of"),  # fusion's decay: the oldest scores first
    )

    status: str = Field(sa_column=Column(Text, primary_key=True))
    grid_cell: str = Field(sa_column=Column(Text, primary_key=True))
    community_id: str | None = Field(default=None, sa_column=Column(Text))
    score: float = Field(sa_column=Column(Float, nullable=False))
    level: str = Field(sa_column=Column(Text, nullable=False))
    level_since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    incidents: int = Field(sa_column=Column(Integer, nullable=False))
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    geom: Any = Field(
        sa_column=Column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False)
    )
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class ResourceBalance(SQLModel, table=True):
    """A community's latest statement of a resource it has available or needs."""

    __tablename__ = "resource_balance"
    __table_args__ = (CheckConstraint("direction IN ('available', 'needed')"),)

    community_id: str = Field(sa_column=Column(Text, ForeignKey("community.id"), primary_key=True))
    status: str = Field(sa_column=Column(Text, primary_key=True))
    resource_type: str = Field(sa_column=Column(Text, primary_key=True))
    unit: str = Field(sa_column=Column(Text, primary_key=True))
    direction: str = Field(sa_column=Column(Text, primary_key=True))
    quantity: float = Field(sa_column=Column(Float, nullable=False))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    geom: Any = Field(
        sa_column=Column(Geometry("POINT", srid=4326, spatial_index=False), nullable=False)
    )
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
