"""Tables of webhooks (migration 0015_webhooks), mirrored like ``hub.store.models``.

``hub.store.webhooks`` reads and writes them in SQL of its own; these classes exist so that the
comparison of models and migrations covers them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel

from hub.store.models import EMPTY, NOW, TSTZ, ZERO


class WebhookSubscription(SQLModel, table=True):
    """A webhook: the principal it acts for, where and what it delivers, the notifier's state."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('community', 'department', 'analyst', 'admin')",
            name="webhook_subscription_kind_check",
        ),
        Index("webhook_subscription_subject", "subject"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    issuer: str = Field(sa_column=Column(Text, nullable=False))
    client_id: str | None = Field(default=None, sa_column=Column(Text))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    community_id: str | None = Field(default=None, sa_column=Column(Text))
    jurisdiction_wkb: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    categories: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text)))
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    types: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    filters: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=EMPTY)
    )
    created_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))
    cursor_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=ZERO))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))


class WebhookSecret(SQLModel, table=True):
    __tablename__ = "webhook_secret"

    subscription_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("webhook_subscription.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    # INSERT-only for the API role; read by the notifier (see the migration)
    secret: str = Field(sa_column=Column(Text, nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """One attempt to deliver one change to one subscription."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('delivered', 'failed', 'refused')", name="webhook_delivery_outcome_check"
        ),
        Index("webhook_delivery_subscription", "subscription_id", "id"),
    )

    id: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    subscription_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("webhook_subscription.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    webhook_id: str = Field(sa_column=Column(Text, nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))
    outcome: str = Field(sa_column=Column(Text, nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer))
    error: str | None = Field(default=None, sa_column=Column(Text))
    duration_ms: float = Field(sa_column=Column(Float, nullable=False))
