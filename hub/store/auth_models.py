"""Tables of authorization and audit (migrations 0002_auth, 0002_audit), mirrored like
``hub.store.models``.

``hub.auth`` and ``hub.audit`` read and write them in SQL of their own; these classes exist so
that the comparison of models and migrations covers every table (and so that
``alembic revision --autogenerate`` does not propose to drop them).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from hub.store.models import NOW, TSTZ, geometry

SECRET_HASH = "scrypt$N$r$p$salt$hash of the client secret; the secret itself is never stored"
CLIENT_JWK = "public key of a private_key_jwt client (RFC 7523 client assertions)"
PRIVATE_JWK = (
    "private JWK, AES-256-GCM sealed when HUB_SIGNING_KEY_SECRET is set. Production: "
    "keep signing keys in a KMS/HSM and store only a key reference here."
)


class OAuthClient(SQLModel, table=True):
    """A registered client: its kind, how it authenticates, what it may reach."""

    __tablename__ = "oauth_client"
    __table_args__ = (
        CheckConstraint("kind IN ('community', 'department', 'analyst', 'admin')"),
        # unnamed in the migration: PostgreSQL numbered them in this order
        CheckConstraint(
            "secret_hash IS NOT NULL OR public_jwk IS NOT NULL", name="oauth_client_check"
        ),
        CheckConstraint(
            "(kind = 'community') = (community_id IS NOT NULL)", name="oauth_client_check1"
        ),
        CheckConstraint(
            "(kind = 'department') = (jurisdiction IS NOT NULL)", name="oauth_client_check2"
        ),
        CheckConstraint("categories IS NULL OR kind = 'department'", name="oauth_client_check3"),
    )

    client_id: str = Field(sa_column=Column(Text, primary_key=True))
    kind: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    secret_hash: str | None = Field(default=None, sa_column=Column(Text, comment=SECRET_HASH))
    public_jwk: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONB, comment=CLIENT_JWK)
    )
    community_id: str | None = Field(
        default=None, sa_column=Column(Text, ForeignKey("community.id"))
    )
    jurisdiction: Any = Field(default=None, sa_column=Column(geometry("MULTIPOLYGON")))
    categories: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text)))
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    created_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))


class SigningKey(SQLModel, table=True):
    """A token signing key; retired keys keep verifying for one token lifetime."""

    __tablename__ = "signing_key"
    __table_args__ = (
        CheckConstraint("alg IN ('ES256', 'EdDSA')"),
        # at most one key signs
        Index(
            "signing_key_one_active",
            text("(true)"),
            unique=True,
            postgresql_where="retired_at IS NULL",
        ),
    )

    kid: str = Field(sa_column=Column(Text, primary_key=True))
    alg: str = Field(sa_type=Text)
    private_jwk: str = Field(sa_column=Column(Text, nullable=False, comment=PRIVATE_JWK))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(TSTZ, nullable=False, server_default=NOW))
    retired_at: datetime | None = Field(default=None, sa_column=Column(TSTZ))


class UsedJti(SQLModel, table=True):
    """A client assertion's id, kept until it expires (RFC 7523 3: single use)."""

    __tablename__ = "used_jti"
    __table_args__ = (Index("used_jti_expires_at", "expires_at"),)

    client_id: str = Field(sa_column=Column(Text, primary_key=True))
    jti: str = Field(sa_column=Column(Text, primary_key=True))
    expires_at: datetime = Field(sa_column=Column(TSTZ, nullable=False))


class AuditLog(SQLModel, table=True):
    """One hash-chained row per audited request (append-only: a trigger refuses the rest)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("audit_log_subject_id", "subject", "id"),)

    # assigned by the append, not an identity: a gap must mean a deleted row
    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: datetime = Field(sa_column=Column(TSTZ, nullable=False))
    subject: str | None = Field(default=None, sa_type=Text)
    principal_kind: str | None = Field(default=None, sa_type=Text)
    client_id: str | None = Field(default=None, sa_type=Text)
    issuer: str | None = Field(default=None, sa_type=Text)
    method: str = Field(sa_type=Text)
    endpoint: str | None = Field(default=None, sa_type=Text)
    path: str = Field(sa_type=Text)
    params: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: int = Field(sa_column=Column(Integer, nullable=False))
    rows: int | None = Field(default=None, sa_column=Column(Integer))
    client_addr: str | None = Field(default=None, sa_type=Text)
    duration_ms: Decimal = Field(sa_column=Column(Numeric(12, 3), nullable=False))
    prev_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditHead(SQLModel, table=True):
    """The one row naming the audit chain's last id and hash (appends lock it)."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("singleton"),)

    singleton: bool = Field(
        sa_column=Column(Boolean, primary_key=True, server_default=text("true"))
    )
    last_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
