"""One subscription as the notifier sees it: the principal it acts for now, the changes it
has to deliver, and the bookkeeping of each attempt (owner role, one short transaction each).

The principal is evaluated again at every read: a machine client's current record (its
community, jurisdiction, categories; a revoked client's subscription is disabled), narrowed to
the scopes it held when it subscribed; a person signed in elsewhere keeps what the token said
when the subscription was made. The changes are read through that principal's reach by the
stream's own code (``hub.access.changes``), so a webhook receives exactly what the stream
would send it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from hub.access.changes import changes_seen, readable
from hub.access.principal import Principal
from hub.access.session import ZoneCache
from hub.auth.clients import get_client
from hub.settings import Settings
from hub.store import webhooks
from hub.store.db import get_engine
from hub.store.webhooks import filter_of

BATCH = 100  # changes read per step: a subscription far behind catches up in steps


@dataclass(frozen=True)
class Sub:
    """An active subscription with its secret and stored principal."""

    id: uuid.UUID
    url: str
    secret: str
    cursor: int
    failures: int
    next_attempt_at: datetime | None
    row: Row[Any]

    @staticmethod
    def of(row: Row[Any]) -> Sub:
        return Sub(
            row.id, row.url, row.secret, row.cursor_seq, row.failures, row.next_attempt_at, row
        )

    def webhook_id(self, seq: int) -> str:
        """The message id of change ``seq``: the same on every retry, and after a restart."""
        return f"msg_{self.id.hex}_{seq}"


def active(settings: Settings) -> list[Sub]:
    with get_engine(settings).begin() as conn:
        return [Sub.of(r) for r in webhooks.active_subscriptions(conn)]


def principal_of(settings: Settings, sub: Sub) -> Principal | None:
    """Who the subscription acts for now; None when its client is revoked or gone."""
    row = sub.row
    granted = frozenset(row.scopes)
    if row.client_id is None:
        return Principal(
            subject=row.subject,
            kind=row.kind,
            scopes=granted,
            issuer=row.issuer,
            community_id=row.community_id,
            jurisdiction_wkb=row.jurisdiction_wkb,
            categories=frozenset(row.categories) if row.categories is not None else None,
            person=True,
        )
    with get_engine(settings).connect() as conn:
        client = get_client(conn, row.client_id)
    if client is None or not client.active:
        return None
    return client.principal(granted, row.issuer)


def pending(
    settings: Settings, zones: ZoneCache, sub: Sub, principal: Principal
) -> tuple[list[dict[str, Any]], int]:
    """The changes after the cursor the principal sees, and the sequence read up to."""
    row = sub.row
    wanted = filter_of(list(readable(principal, tuple(row.types))) or ["none"], row.filters)
    return changes_seen(settings, principal, zones, wanted, sub.cursor, BATCH)


def advance(settings: Settings, sub_id: uuid.UUID, cursor: int) -> bool:
    with get_engine(settings).begin() as conn:
        return webhooks.advance(conn, sub_id, cursor)


def record(
    settings: Settings, sub: Sub, seq: int, attempt_no: int, attempt: Any, next_at: datetime
) -> int:
    """Log an attempt; a failure counts and schedules the next. Returns the consecutive
    failures now (0 after a success; -1: the subscription is gone)."""
    try:
        return _record(settings, sub, seq, attempt_no, attempt, next_at)
    except IntegrityError:  # deleted meanwhile: its log went with it
        return -1


def _record(
    settings: Settings, sub: Sub, seq: int, attempt_no: int, attempt: Any, next_at: datetime
) -> int:
    with get_engine(settings).begin() as conn:
        webhooks.record_attempt(
            conn,
            sub.id,
            seq,
            sub.webhook_id(seq),
            attempt_no,
            attempt.outcome,
            attempt.status_code,
            attempt.error,
            attempt.duration_ms,
        )
        if attempt.outcome == "delivered":
            return 0 if webhooks.advance(conn, sub.id, seq) else -1
        failures = webhooks.failed(conn, sub.id, next_at)
        return failures if failures else -1


def disable(settings: Settings, sub_id: uuid.UUID, reason: str) -> None:
    with get_engine(settings).begin() as conn:
        webhooks.disable(conn, sub_id, reason)
