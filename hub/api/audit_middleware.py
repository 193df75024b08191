"""Records every /v1 and /ogc request in the hash-chained audit log.

Pure ASGI middleware (no BaseHTTPMiddleware, which would buffer bodies and break streaming). The
append runs when the app starts its response: status, principal and row count are known by
then, and the client has not been answered yet, so a write that cannot be audited can still be
refused. ``duration_ms`` is therefore the time to the response's start. Cost: one SQL
statement (one round trip, its own transaction) per request, on a thread and a small
connection pool of its own.

Durability: a write's row is committed durably before the client hears back; a read's row is
committed asynchronously (``synchronous_commit = off``: a PostgreSQL crash may lose the last
fraction of a second of read rows, as a tail of the chain, never a hole in it).

Failure policy: an append that fails is logged at error level and counted in
``hub_audit_append_failures_total{access}``. A *read* is still answered (refusing reads while
the audit store is down would take the whole shared picture offline in a crisis); a successful
*write* (any method but GET/HEAD/OPTIONS) is answered 503 instead (fail closed: no unaudited
change is acknowledged; the change itself may have happened, and event ids make the retry safe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
import psycopg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import problem
from hub.audit import store
from hub.audit.chain import AuditRecord, ChainRow
from hub.audit.record import Network, audited, build_record, trusted_networks
from hub.settings import Settings
from hub.store.db import connect

if TYPE_CHECKING:
    from sqlalchemy.pool.base import _CreatorFnType

log = logging.getLogger("hub.audit")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POOL_SIZE = 4  # appends are serialised by the head lock: more connections would only queue
LOCK_TIMEOUT = "2s"  # a stuck append fails (and is counted) instead of hanging the API


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.append_failures = Counter(
            "hub_audit_append_failures",
            "Requests whose audit row could not be written",
            ["access"],
            registry=registry,
        )
        for access in ("read", "write"):
            self.append_failures.labels(access)  # exported as 0 from the start


class AuditWriter:
    """Appends on a pool of its own, never the API's: a request still holds its API session
    while its response starts, and sharing one pool would deadlock under load."""

    def __init__(self, settings: Settings, pool_size: int = POOL_SIZE) -> None:
        # Threads of their own too: the default thread limiter is shared with sync views, and
        # views blocked on the API pool must never keep a finished request from appending.
        self.limiter = anyio.CapacityLimiter(pool_size)
        # psycopg's Connection is a DBAPI connection; SQLAlchemy's protocol type does not say so.
        creator = cast("_CreatorFnType", lambda: self._open(settings))
        self._pool = QueuePool(creator, pool_size=pool_size, max_overflow=0, timeout=5)

    @staticmethod
    def _open(settings: Settings) -> psycopg.Connection[Any]:
        conn = connect(settings, autocommit=True, api_purpose="audit")
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        return conn

    def append(self, record: AuditRecord, durable: bool = True) -> ChainRow:
        pooled = self._pool.connect()
        conn = cast("psycopg.Connection[Any]", pooled.driver_connection)
        try:
            return store.append(conn, record, durable=durable)
        except psycopg.OperationalError:
            pooled.invalidate()  # a dead connection must not go back to the pool
            raise
        finally:
            pooled.close()

    def close(self) -> None:
        self._pool.dispose()


class AuditMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        writer: AuditWriter,
        metrics: AuditMetrics,
        trusted: tuple[Network, ...] = (),
    ) -> None:
        self.app = app
        self.writer = writer
        self.metrics = metrics
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["path"]):
            await self.app(scope, receive, send)
            return
        # The views and the auth dependency write request.state into this same dict.
        scope.setdefault("state", {})
        at, start = datetime.now(UTC), time.perf_counter()
        write = scope["method"] not in READ_METHODS
        appended = refused = False

        async def send_audited(message: Message) -> None:
            nonlocal appended, refused
            if refused:
                return  # the app's own response was replaced by the 503
            if message["type"] == "http.response.start" and not appended:
                appended = True
                status = message["status"]
                ok = await self._append(scope, at, status, time.perf_counter() - start, write)
                if not ok and write and status < 400:
                    refused = True
                    await _unavailable(scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except Exception:
            if not appended:  # raised before answering: the server error handler answers 500
                appended = True
                await self._append(scope, at, 500, time.perf_counter() - start, write)
            raise

    async def _append(
        self, scope: Scope, at: datetime, status: int, duration_s: float, write: bool
    ) -> bool:
        try:
            record = build_record(
                scope, at=at, status=status, duration_s=duration_s, trusted=self.trusted
            )
            # Reads commit without waiting for the WAL flush (about half the cost); writes wait.
            await anyio.to_thread.run_sync(
                self.writer.append, record, write, limiter=self.writer.limiter
            )
        except Exception:
            log.error(
                "audit append failed for %s %s",
                scope["method"],
                scope["path"],
                exc_info=True,
                extra={"status": status, "access": "write" if write else "read"},
            )
            self.metrics.append_failures.labels("write" if write else "read").inc()
            return False
        return True


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    response = problem(
        Request(scope),
        503,
        "the audit log could not record this request, so it is not confirmed; retry later "
        "(resending the same event ids is safe)",
        headers={"Retry-After": "5"},
    )
    await response(scope, receive, send)


def _trusted_proxies(settings: Settings) -> tuple[Network, ...]:
    # Empty (the default): X-Forwarded-For is ignored, the peer address is recorded.
    return trusted_networks(settings.trusted_proxies)


def install_audit(app: FastAPI, settings: Settings) -> None:
    """Audit every /v1 and /ogc request of ``app``; call once, before it serves requests."""
    api_metrics = getattr(app.state, "metrics", None)
    registry = getattr(api_metrics, "registry", None) or CollectorRegistry()
    metrics = AuditMetrics(registry)
    writer = AuditWriter(settings)
    app.state.audit_writer = writer
    app.add_middleware(
        AuditMiddleware, writer=writer, metrics=metrics, trusted=_trusted_proxies(settings)
    )
    # Close the pool with the app (TestClient and uvicorn both run the lifespan).
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        try:
            async with inner(a) as state:
                yield state
        finally:
            writer.close()

    app.router.lifespan_context = lifespan
