"""Tables of the shared risk picture (SQLModel + GeoAlchemy2); authorization's and the audit
log's are in ``hub.store.auth_models``, the change log's and CAP alerts' in
``hub.store.change_models``.

The migrations in ``migrations/versions`` are the source of truth for DDL; these classes mirror
them (columns, defaults, keys, CHECK constraints, indexes by name) for queries and for
``alembic revision --autogenerate``, and ``tests/test_models_migrations.py`` fails when the two
drift apart. Geometries are WGS84 (SRID 4326), with ``spatial_index=False``: their GiST indexes
are declared by the names the migrations gave them (GeoAlchemy2's would be ``idx_<table>_<col>``).
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

TSTZ = DateTime(timezone=True)  # the migrations' timestamptz
NOW = text("now()")
FALSE = text("false")
ZERO = text("0")
EMPTY = text("'{}'")  # an empty array or JSON object, as the column's type reads it
PICTURES = "status IN ('actual', 'exercise', 'test')"


def geometry(kind: str) -> Geometry:
    """A geometry column's type; its GiST index, where it has one, is declared by name."""
    return Geometry(kind, srid=4326, spatial_index=False)


class Community(SQLModel, table=True):
    __tablename__ = "community"
    __table_args__ = (Index("community_geom_gist", "geom", postgresql_using="gist"),)

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    geom: Any = Field(sa_column=Column(geometry("MULTIPOLYGON"), nullable=False))
    repaired: bool = Field(default=False, sa_column_kwargs={"server_default": FALSE})
    properties: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=EMPTY)
    )
    imported_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))


class GridCell(SQLModel, table=True):
    """A unit grid cell: a community's own (``<community>/<code>``) or generated
    (``h3/<index>``)."""

    __tablename__ = "grid_cell"
    __table_args__ = (
        CheckConstraint("source IN ('imported', 'h3')"),
        CheckConstraint(
            "id = CASE source WHEN 'imported' THEN community_id || '/' || code"
            " ELSE 'h3/' || code END",
            name="grid_cell_id_derived",
        ),
        CheckConstraint(
            "(source = 'imported') = (community_id IS NOT NULL)", name="grid_cell_owner"
        ),
        Index("grid_cell_geom_gist", "geom", postgresql_using="gist"),
        Index("grid_cell_community", "community_id", postgresql_where="community_id IS NOT NULL"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    # NULL for H3 cells: they may straddle communities
    community_id: str | None = Field(
        default=None, sa_column=Column(Text, ForeignKey("community.id", ondelete="CASCADE"))
    )
    code: str = Field(sa_type=Text)
    source: str = Field(sa_type=Text)  # imported | h3
    name: str | None = Field(default=None, sa_type=Text)
    geom: Any = Field(sa_column=Column(geometry("MULTIPOLYGON"), nullable=False))
    repaired: bool = Field(default=False, sa_column_kwargs={"server_default": FALSE})
    imported_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))


class Event(SQLModel, table=True):
    """One fused event: what a community system reported, normalised."""

    __tablename__ = "event"
    __table_args__ = (
        Index("event_geom_gist", "geom", postgresql_using="gist"),
        Index("event_community_seq", "community_id", "seq"),
        Index("event_observed_at", "observed_at"),
        Index("event_grid_cell", "grid_cell"),
        # updates and cancels name the events they concern (migration 0005_incidents)
        Index("event_refs_gin", "refs", postgresql_using="gin", postgresql_where="refs <> '{}'"),
        # a balance's statements, latest first (migration 0006_picture)
        Index(
            "event_resource_statement",
            "community_id",
            "status",
            text("(properties ->> 'resource_type')"),
            text("(properties ->> 'unit')"),
            text("(properties ->> 'direction')"),
            text("observed_at DESC"),
            text("event_id DESC"),
            postgresql_where="kind = 'resource'",
        ),
    )

    seq: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), unique=True, nullable=False))
    community_id: str = Field(sa_column=Column(Text, ForeignKey("community.id"), nullable=False))
    kind: str = Field(sa_type=Text)
    category: str = Field(sa_type=Text)
    severity: str = Field(sa_type=Text)
    urgency: str = Field(sa_type=Text)
    certainty: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    event_type: str = Field(sa_type=Text)
    observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    geom: Any = Field(sa_column=Column(geometry("GEOMETRY"), nullable=False))
    source_system: str = Field(sa_type=Text)
    source_connector: str = Field(sa_type=Text)
    reporter: str | None = Field(default=None, sa_type=Text)
    properties: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=EMPTY)
    )
    refs: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(UUID(as_uuid=True)), nullable=False, server_default=EMPTY),
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))
    ingested_at: datetime = Field(
        sa_column=Column(TSTZ, nullable=False, server_default=text("clock_timestamp()"))
    )
    kafka_partition: int = Field(sa_column=Column(Integer, nullable=False))
    kafka_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    # NULL for events stored before grids existed
    grid_cell: str | None = Field(default=None, sa_type=Text)


class EventRef(SQLModel, table=True):
    """Which event refs which, keyed by the event referred to (migration 0011_event_ref)."""

    __tablename__ = "event_ref"

    ref: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    event_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("event.event_id", ondelete="CASCADE"),
            primary_key=True,
        )
    )


class PendingCancel(SQLModel, table=True):
    """A cancel that arrived before the report it cancels (migration 0014_pending_cancel)."""

    __tablename__ = "pending_cancel"

    ref: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    cancel_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("event.event_id", ondelete="CASCADE"), nullable=False
        )
    )


class ConsumerOffset(SQLModel, table=True):
    """Next offset to read per partition, committed with the batch that consumed it."""

    __tablename__ = "consumer_offset"

    group_id: str = Field(sa_column=Column(Text, primary_key=True))
    topic: str = Field(sa_column=Column(Text, primary_key=True))
    partition: int = Field(sa_column=Column(Integer, primary_key=True))
    next_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    topic_id: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))


class FusionStats(SQLModel, table=True):
    """Cumulative fusion counters, updated in the batch transaction (exact across crashes)."""

    __tablename__ = "fusion_stats"

    group_id: str = Field(sa_column=Column(Text, primary_key=True))
    consumed: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=ZERO))
    stored: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=ZERO))
    duplicates: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=ZERO))
    dlq: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=ZERO))
    updated_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))


class CommunityStats(SQLModel, table=True):
    """Per-community activity, kept by fusion so the API need not count the event log."""

    __tablename__ = "community_stats"

    community_id: str = Field(
        sa_column=Column(Text, ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    )
    events_stored: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=ZERO))
    last_event_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))
    last_observed_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))


# --- incidents (migration 0005_incidents; fusion is the only writer) ---------------------------


class Incident(SQLModel, table=True):
    """Reports of one real-world incident fused into one, per picture (``status``)."""

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint(PICTURES),
        CheckConstraint("state IN ('open', 'closed')"),
        CheckConstraint("verification IN ('reported', 'corroborated', 'verified', 'refuted')"),
        Index("incident_geom_gist", "geom", postgresql_using="gist"),
        Index("incident_updated_seq", "updated_seq"),
        Index("incident_last_observed", "status", "last_observed_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    status: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False, server_default=text("'open'")))
    warning: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=FALSE))
    category: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(sa_column=Column(Text, nullable=False))
    certainty: str = Field(sa_column=Column(Text, nullable=False))
    verification: str = Field(sa_column=Column(Text, nullable=False))
    decided_by: str | None = Field(default=None, sa_column=Column(Text))
    decided_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))
    decision_reason: str | None = Field(default=None, sa_column=Column(Text))
    sources: int = Field(sa_column=Column(Integer, nullable=False))
    reports: int = Field(sa_column=Column(Integer, nullable=False))
    communities: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    neighbours: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=EMPTY),
    )
    # Per grid cell and community of the live members, how many (0009): the risk facts.
    grid_cells: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=EMPTY),
    )
    cell_communities: list[str | None] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=EMPTY),
    )
    cell_reports: list[int] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Integer), nullable=False, server_default=EMPTY),
    )
    alerts: int = Field(  # live members of kind alert (0009)
        default=0, sa_column=Column(Integer, nullable=False, server_default=ZERO)
    )
    first_observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    last_observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    geom: Any = Field(sa_column=Column(geometry("GEOMETRY"), nullable=False))
    # fusion COPYs brand-new incidents straight into the table (migration 0006_picture)
    updated_seq: int = Field(
        sa_column=Column(
            BigInteger, nullable=False, server_default=text("nextval('incident_update_seq')")
        )
    )


class IncidentReport(SQLModel, table=True):
    """Which event is in which incident (``pinned``: split out by an operator; ``cancelled``:
    withdrawn by a cancel event). Both ids reference rows fusion writes in the same
    transaction, without foreign keys (migration 0007_report_keys says why)."""

    __tablename__ = "incident_report"
    __table_args__ = (
        Index("incident_report_incident", "incident_id"),
        # fusion's candidate search, an index-only scan (0006_picture, 0010_covering_reach)
        Index(
            "incident_report_reach",
            "status",
            "event_type",
            "observed_at",
            postgresql_include=["lon", "lat", "component_id"],
            postgresql_where="NOT cancelled AND NOT pinned",
        ),
        Index("incident_report_component", "component_id", postgresql_where="NOT cancelled"),
    )

    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    incident_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    pinned: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=FALSE))
    cancelled: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=FALSE))
    # the event's own, repeated for the candidate search (migration 0006_picture)
    status: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
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
    at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    what: str = Field(sa_column=Column(Text, nullable=False))
    event_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    detail: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=EMPTY),
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
    observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    warning_event_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))


class PictureClock(SQLModel, table=True):
    """A picture's time: the latest observed_at fusion stored; risk decays from it."""

    __tablename__ = "picture_clock"
    __table_args__ = (CheckConstraint(PICTURES),)

    status: str = Field(sa_column=Column(Text, primary_key=True))
    at: datetime = Field(sa_column=Column(TSTZ, nullable=False))


class RiskCell(SQLModel, table=True):
    """A grid cell's risk score and four-colour level (with hysteresis), per picture."""

    __tablename__ = "risk_cell"
    __table_args__ = (
        CheckConstraint(PICTURES),
        CheckConstraint("level IN ('blue', 'yellow', 'orange', 'red')"),
        Index("risk_cell_geom_gist", "geom", postgresql_using="gist"),
        Index("risk_cell_raised", "status", "level", postgresql_where="level <> 'blue'"),
        Index("risk_cell_age", "status", "as_of"),  # fusion's decay: the oldest scores first
    )

    status: str = Field(sa_column=Column(Text, primary_key=True))
    grid_cell: str = Field(sa_column=Column(Text, primary_key=True))
    community_id: str | None = Field(default=None, sa_column=Column(Text))
    score: float = Field(sa_column=Column(Float, nullable=False))
    level: str = Field(sa_column=Column(Text, nullable=False))
    level_since: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    incidents: int = Field(sa_column=Column(Integer, nullable=False))
    as_of: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    geom: Any = Field(sa_column=Column(geometry("MULTIPOLYGON"), nullable=False))
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class ResourceBalance(SQLModel, table=True):
    """A community's latest statement of a resource it has available or needs."""

    __tablename__ = "resource_balance"
    __table_args__ = (
        CheckConstraint(PICTURES),
        CheckConstraint("direction IN ('available', 'needed')"),
        CheckConstraint("quantity >= 0"),
        Index("resource_balance_type", "status", "resource_type", "direction"),
    )

    community_id: str = Field(sa_column=Column(Text, ForeignKey("community.id"), primary_key=True))
    status: str = Field(sa_column=Column(Text, primary_key=True))
    resource_type: str = Field(sa_column=Column(Text, primary_key=True))
    unit: str = Field(sa_column=Column(Text, primary_key=True))
    direction: str = Field(sa_column=Column(Text, primary_key=True))
    quantity: float = Field(sa_column=Column(Float, nullable=False))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    observed_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    geom: Any = Field(sa_column=Column(geometry("POINT"), nullable=False))
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
