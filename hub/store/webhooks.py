"""Webhook subscriptions, their secrets and the delivery log (migration 0015_webhooks).

Two callers, two roles. The API (as ``hub_api``, the caller set for row-level security)
creates, lists and deletes the caller's own subscriptions and reads their deliveries; it may
insert a secret but never read one. The notifier (the owner role) reads the active
subscriptions with their secrets and keeps each one's state: its cursor in the change log, its
consecutive failures and backoff, and the log of attempts.

SQL of its own, every value a bound parameter. A subscription's filters are stored as the
stream's ``ChangeFilter`` in JSON (``filter_json`` / ``filter_of``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, text
from sqlalchemy.orm import Session

from hub.store.change_queries import ChangeFilter
from hub.store.queries import BBox

_PUBLIC = (
    "id, url, types, filters, created_at, cursor_seq, failures, next_attempt_at,"
    " disabled_at, disabled_reason"
)
_PRINCIPAL = "subject, issuer, client_id, kind, community_id, jurisdiction_wkb, categories, scopes"


@dataclass(frozen=True)
class NewSubscription:
    """What the API stores for a new subscription: the principal it acts for, where it
    delivers, what it asked for, and where in the change log it starts."""

    id: uuid.UUID
    subject: str
    issuer: str
    client_id: str | None
    kind: str
    community_id: str | None
    jurisdiction_wkb: bytes | None
    categories: list[str] | None
    scopes: list[str]
    url: str
    types: list[str]
    filters: dict[str, Any]
    cursor_seq: int


def filter_json(f: ChangeFilter) -> dict[str, Any]:
    """A filter as stored (types apart: a column of their own)."""
    bbox = f.bbox
    return {
        "status": f.status,
        "bbox": None if bbox is None else [bbox.min_lon, bbox.min_lat, bbox.max_lon, bbox.max_lat],
        "community": f.community,
        "event_type": f.event_type,
        "verification": None if f.verification is None else list(f.verification),
        "min_level": f.min_level,
    }


def filter_of(types: list[str], stored: dict[str, Any]) -> ChangeFilter:
    """The stored filter, back as the stream's ``ChangeFilter``."""
    bbox = stored.get("bbox")
    verification = stored.get("verification")
    return ChangeFilter(
        types=tuple(types),
        status=stored.get("status", "actual"),
        bbox=None if bbox is None else BBox(*bbox),
        community=stored.get("community"),
        event_type=stored.get("event_type"),
        verification=None if verification is None else tuple(verification),
        min_level=stored.get("min_level"),
    )


# --- the API's side (the caller's own subscriptions, row-level security set) ----------------


def create_subscription(session: Session, new: NewSubscription, secret: str) -> Row[Any]:
    """Insert the subscription and its secret; returns the stored subscription."""
    values = {k: v for k, v in new.__dict__.items() if k != "filters"}
    row = session.execute(
        text(
            "INSERT INTO webhook_subscription (id, subject, issuer, client_id, kind,"
            " community_id, jurisdiction_wkb, categories, scopes, url, types, filters,"
            " cursor_seq) VALUES (:id, :subject, :issuer, :client_id, :kind, :community_id,"
            " :jurisdiction_wkb, :categories, :scopes, :url, :types, CAST(:filters AS jsonb),"
            f" :cursor_seq) RETURNING {_PUBLIC}"
        ),
        {**values, "filters": orjson.dumps(new.filters).decode()},
    ).one()
    # No RETURNING: the API role may write a secret, never read one.
    session.execute(
        text("INSERT INTO webhook_secret (subscription_id, secret) VALUES (:id, :secret)"),
        {"id": new.id, "secret": secret},
    )
    return row


def own_subscriptions(session: Session, subject: str) -> list[Row[Any]]:
    return list(
        session.execute(
            text(
                f"SELECT {_PUBLIC} FROM webhook_subscription WHERE subject = :subject"
                " ORDER BY created_at, id"
            ),
            {"subject": subject},
        )
    )


def own_subscription(session: Session, subject: str, sub_id: uuid.UUID) -> Row[Any] | None:
    return session.execute(
        text(f"SELECT {_PUBLIC} FROM webhook_subscription WHERE id = :id AND subject = :subject"),
        {"id": sub_id, "subject": subject},
    ).first()


def delete_subscription(session: Session, subject: str, sub_id: uuid.UUID) -> bool:
    """Delete the caller's subscription (its secret and deliveries go with it)."""
    found = session.execute(
        text("DELETE FROM webhook_subscription WHERE id = :id AND subject = :subject RETURNING 1"),
        {"id": sub_id, "subject": subject},
    ).first()
    return found is not None


def deliveries(
    session: Session, sub_id: uuid.UUID, before: int | None, limit: int
) -> list[Row[Any]]:
    """The subscription's attempts, newest first (row-level security: the caller's own)."""
    return list(
        session.execute(
            text(
                "SELECT id, seq, webhook_id, attempt, at, outcome, status_code, error,"
                " duration_ms FROM webhook_delivery WHERE subscription_id = :id"
                " AND (CAST(:before AS bigint) IS NULL OR id < :before)"
                " ORDER BY id DESC LIMIT :limit"
            ),
            {"id": sub_id, "before": before, "limit": limit},
        )
    )


# --- the notifier's side (owner role) ----------------------------------------------------------


def active_subscriptions(conn: Connection) -> list[Row[Any]]:
    """Every subscription not disabled, with its principal and secret."""
    return list(
        conn.execute(
            text(
                f"SELECT {_PUBLIC}, {_PRINCIPAL}, k.secret FROM webhook_subscription s"
                " JOIN webhook_secret k ON k.subscription_id = s.id"
                " WHERE s.disabled_at IS NULL ORDER BY s.created_at, s.id"
            )
        )
    )


def record_attempt(
    conn: Connection,
    sub_id: uuid.UUID,
    seq: int,
    webhook_id: str,
    attempt: int,
    outcome: str,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
) -> None:
    conn.execute(
        text(
            "INSERT INTO webhook_delivery (subscription_id, seq, webhook_id, attempt, outcome,"
            " status_code, error, duration_ms) VALUES (:sub, :seq, :wid, :attempt, :outcome,"
            " :status, :error, :ms)"
        ),
        {
            "sub": sub_id,
            "seq": seq,
            "wid": webhook_id,
            "attempt": attempt,
            "outcome": outcome,
            "status": status_code,
            "error": error,
            "ms": duration_ms,
        },
    )


def advance(conn: Connection, sub_id: uuid.UUID, cursor: int) -> bool:
    """Move the cursor on (a delivery succeeded, or the changes were not for it); failures
    reset. False when the subscription is gone (deleted meanwhile)."""
    found = conn.execute(
        text(
            "UPDATE webhook_subscription SET cursor_seq = greatest(cursor_seq, :cursor),"
            " failures = 0, next_attempt_at = NULL WHERE id = :id RETURNING 1"
        ),
        {"id": sub_id, "cursor": cursor},
    ).first()
    return found is not None


def failed(conn: Connection, sub_id: uuid.UUID, next_at: datetime) -> int:
    """Count a failure and set the next attempt; returns the consecutive failures (0: gone)."""
    found = conn.execute(
        text(
            "UPDATE webhook_subscription SET failures = failures + 1, next_attempt_at = :next"
            " WHERE id = :id RETURNING failures"
        ),
        {"id": sub_id, "next": next_at},
    ).first()
    return int(found[0]) if found is not None else 0


def disable(conn: Connection, sub_id: uuid.UUID, reason: str) -> None:
    conn.execute(
        text(
            "UPDATE webhook_subscription SET disabled_at = now(), disabled_reason = :reason,"
            " next_attempt_at = NULL WHERE id = :id AND disabled_at IS NULL"
        ),
        {"id": sub_id, "reason": reason},
    )
