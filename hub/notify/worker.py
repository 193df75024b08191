"""The notifier's loop: wakes on fusion's NOTIFY (or polls), and runs one task per subscription
that has changes to deliver.

Each subscription walks the change log from its own persisted cursor, one change at a time and
in order: a change is delivered (2xx) before the cursor moves past it, so a crash repeats a
delivery, never loses one (at-least-once; the ``webhook-id`` is the same, and receivers
deduplicate on it). A failure is logged, counted and retried after an exponential backoff
(``HUB_WEBHOOK_BACKOFF_S`` doubled per consecutive failure, at most
``HUB_WEBHOOK_BACKOFF_MAX_S``), persisted so a restart keeps it; at
``HUB_WEBHOOK_MAX_FAILURES`` consecutive failures the subscription is disabled.

Subscriptions are independent tasks: one whose receiver hangs waits out its own timeout while
the others deliver; at most ``HUB_WEBHOOK_CONCURRENCY`` requests are in flight at once. The
database work runs on threads (it is short), the HTTP on the event loop (httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hub.access.features import dumps
from hub.access.session import ZoneCache
from hub.notify import subscription as subs
from hub.notify.metrics import NotifyMetrics
from hub.notify.send import send
from hub.notify.subscription import Sub
from hub.settings import Settings
from hub.store.change_queries import CHANNEL
from hub.store.db import connect_listener

log = logging.getLogger("hub.notify")

LISTEN_RETRY_S = 1.0


def backoff_s(settings: Settings, failures: int) -> float:
    """The wait after ``failures`` consecutive failures (>= 1)."""
    return float(
        min(settings.webhook_backoff_max_s, settings.webhook_backoff_s * 2 ** (failures - 1))
    )


class NotifyWorker:
    """Delivers the picture's changes to every active subscription until stopped."""

    def __init__(self, settings: Settings, metrics: NotifyMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or NotifyMetrics()
        self.zones = ZoneCache()
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop (from any thread or a signal handler): deliveries under way are cancelled and
        will be repeated by the next run (their cursor has not moved)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        asyncio.run(self.serve(on_ready))

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        limits = httpx.Limits(max_connections=self.settings.webhook_concurrency)
        slots = asyncio.Semaphore(self.settings.webhook_concurrency)
        async with httpx.AsyncClient(
            limits=limits, follow_redirects=False, trust_env=False, timeout=None
        ) as client:
            listener = asyncio.create_task(self._listen(), name="notify-listen")
            if on_ready is not None:
                on_ready()
            try:
                while not self._stopping.is_set():
                    self._wake.clear()
                    await self._schedule(client, slots)
                    await self._sleep(self.settings.webhook_poll_s, self._wake)
            finally:
                listener.cancel()
                for task in [listener, *self._tasks.values()]:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        log.info("notifier stopped")

    async def _sleep(self, seconds: float, *events: asyncio.Event) -> None:
        """Until ``seconds`` pass, one of ``events`` is set, or the worker stops."""
        assert self._stopping is not None
        waits = [asyncio.create_task(e.wait()) for e in (*events, self._stopping)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _listen(self) -> None:
        assert self._wake is not None
        while True:
            try:
                conn = await connect_listener(self.settings)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # anything committed before LISTEN: read again
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarting: the poll carries on meanwhile
                log.warning("notify LISTEN failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(LISTEN_RETRY_S)

    # --- scheduling ---------------------------------------------------------------------------

    async def _schedule(self, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        """A task for every active subscription that has none running."""
        try:
            active = await asyncio.to_thread(subs.active, self.settings)
        except Exception as exc:  # the database away: next round
            log.warning("reading subscriptions failed", extra={"error": str(exc)})
            return
        self.metrics.active.set(len(active))
        for sub in active:
            running = self._tasks.get(sub.id)
            if running is None or running.done():
                self._tasks[sub.id] = asyncio.create_task(
                    self._serve(sub, client, slots), name=f"notify-{sub.id}"
                )
        live = {s.id for s in active}
        for sub_id in [i for i, t in self._tasks.items() if t.done() and i not in live]:
            del self._tasks[sub_id]

    async def _serve(self, sub: Sub, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        """Deliver the subscription's pending changes in order; returns when caught up, failing
        for good, or gone."""
        try:
            await self._catch_up(sub, client, slots)
        except asyncio.CancelledError:
            raise
        except Exception:  # one subscription's trouble never stops the others
            log.exception("subscription failed; retried next round", extra={"sub": str(sub.id)})

    async def _catch_up(
        self, sub: Sub, client: httpx.AsyncClient, slots: asyncio.Semaphore
    ) -> None:
        settings = self.settings
        if sub.next_attempt_at is not None:  # a backoff from an earlier round or run
            wait = (sub.next_attempt_at - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await self._sleep(wait)
        failures = sub.failures
        while True:
            principal = await asyncio.to_thread(subs.principal_of, settings, sub)
            if principal is None:
                await self._disable(sub, "client revoked", "revoked")
                return
            seen, cursor = await asyncio.to_thread(
                subs.pending, settings, self.zones, sub, principal
            )
            for data in seen:
                failures = await self._deliver(sub, data, failures, client, slots)
                if failures < 0:
                    return
            if cursor > sub.cursor and not await asyncio.to_thread(
                subs.advance, settings, sub.id, cursor
            ):
                return  # deleted meanwhile
            if not seen and cursor == sub.cursor:
                return  # caught up
            sub = Sub(sub.id, sub.url, sub.secret, cursor, 0, None, sub.row)

    async def _deliver(
        self,
        sub: Sub,
        data: dict[str, Any],
        failures: int,
        client: httpx.AsyncClient,
        slots: asyncio.Semaphore,
    ) -> int:
        """Deliver one change, retrying with backoff; the consecutive failures after it
        (0: delivered), or -1 when the subscription is disabled or gone."""
        settings, body, seq = self.settings, dumps(data), int(data["seq"])
        while True:
            async with slots:
                self.metrics.in_flight.inc()
                try:
                    attempt = await send(
                        client,
                        sub.url,
                        sub.secret,
                        sub.webhook_id(seq),
                        body,
                        settings.webhook_allowed_hosts,
                        settings.webhook_timeout_s,
                    )
                finally:
                    self.metrics.in_flight.dec()
            wait = backoff_s(settings, failures + 1)
            next_at = datetime.now(UTC) + timedelta(seconds=wait)
            now = await asyncio.to_thread(
                subs.record, settings, sub, seq, failures + 1, attempt, next_at
            )
            self._observe(sub, data, attempt, failures + 1)
            if now <= 0:
                return now
            failures = now
            if failures >= settings.webhook_max_failures:
                await self._disable(sub, f"{failures} consecutive failed deliveries", "failures")
                return -1
            await self._sleep(wait)
            if self._stopping is not None and self._stopping.is_set():
                return -1

    def _observe(self, sub: Sub, data: dict[str, Any], attempt: Any, number: int) -> None:
        self.metrics.attempts.labels(attempt.outcome).inc()
        self.metrics.seconds.observe(attempt.duration_ms / 1000)
        extra = {
            "sub": str(sub.id),
            "seq": data["seq"],
            "attempt": number,
            "outcome": attempt.outcome,
            "status_code": attempt.status_code,
            "duration_ms": round(attempt.duration_ms, 1),
        }
        if attempt.outcome == "delivered":
            lag = (datetime.now(UTC) - data["at"]).total_seconds()
            self.metrics.lag.observe(max(0.0, lag))
            log.info("delivered", extra=extra)
        else:
            log.warning("delivery failed", extra={**extra, "error": attempt.error})

    async def _disable(self, sub: Sub, reason: str, label: str) -> None:
        await asyncio.to_thread(subs.disable, self.settings, sub.id, reason)
        self.metrics.disabled.labels(label).inc()
        log.warning("subscription disabled", extra={"sub": str(sub.id), "reason": reason})
