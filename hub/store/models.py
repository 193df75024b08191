"""Tables of the shared risk picture (SQLModel + GeoAlchemy2).

The migration in ``migrations/versions`` is the source of truth for DDL; these classes mirror
it for queries. Geometries are WGS84 (SRID 4326).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Column, DateTime, Identity, Integer, Text
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
