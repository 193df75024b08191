"""The tables of what the hub tells: the change log fusion writes for the stream and webhooks
(0012_changes) and the CAP alerts the API issued (0013_cap). The other tables are in
``hub.store.models`` and ``hub.store.auth_models``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Identity, Index, Integer, Text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel import Field, SQLModel

from hub.store.models import EMPTY, NOW, PICTURES, TSTZ, geometry


class PictureChange(SQLModel, table=True):
    """One change of the picture, written by fusion in its batch's transaction (the stream)."""

    __tablename__ = "picture_change"
    __table_args__ = (
        CheckConstraint(PICTURES, name="picture_change_status_check"),
        CheckConstraint(
            "type IN ('incident', 'warning', 'risk', 'resource')", name="picture_change_type_check"
        ),
        Index("picture_change_object", "type", "object_id", "seq"),
    )

    seq: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))
    type: str = Field(sa_column=Column(Text, nullable=False))
    change: str = Field(sa_column=Column(Text, nullable=False))
    object_id: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    communities: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=EMPTY),
    )
    bbox: Any = Field(default=None, sa_column=Column(geometry("GEOMETRY")))
    event_type: str | None = Field(default=None, sa_column=Column(Text))
    verification: str | None = Field(default=None, sa_column=Column(Text))
    level: str | None = Field(default=None, sa_column=Column(Text))


class PictureChangeMark(SQLModel, table=True):
    """How far fusion has recorded changes, per source sequence (``hub.fusion.changes``)."""

    __tablename__ = "picture_change_mark"

    source: str = Field(sa_column=Column(Text, primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class CapAlert(SQLModel, table=True):
    """A CAP 1.2 alert the API issued for an incident (0013_cap): one series per incident."""

    __tablename__ = "cap_alert"
    __table_args__ = (
        CheckConstraint("revision >= 1"),
        CheckConstraint("msg_type IN ('Alert', 'Update', 'Cancel')"),
    )

    incident_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    revision: int = Field(sa_column=Column(Integer, primary_key=True))
    msg_type: str = Field(sa_column=Column(Text, nullable=False))
    sent: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    digest: str = Field(sa_column=Column(Text, nullable=False))
