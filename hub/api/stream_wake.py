"""The stream's wake-ups: one LISTEN connection per app, fanned out to every stream client.

Fusion NOTIFYs ``hub_changes`` in each batch's transaction (delivered when it commits). One
task per app holds the LISTEN connection and sets every waiting client's event; a client that
is not waiting (still sending) finds its event set when it comes back. The connection is
opened with the first client and reopened after a failure; clients poll meanwhile (the
fallback: ``HUB_STREAM_POLL_S``), so a lost connection delays changes, never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hub.settings import Settings
from hub.store.change_queries import CHANNEL
from hub.store.db import connect_listener

log = logging.getLogger(__name__)

RETRY_S = 1.0


class Wake:
    """Fans fusion's NOTIFYs out to the stream clients of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Event:
        """A client's event, set whenever a change may have been committed."""
        event = asyncio.Event()
        self._clients.add(event)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="hub-stream-listen")
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._clients.discard(event)

    def _wake_all(self) -> None:
        for event in self._clients:
            event.set()

    async def _listen(self) -> None:
        while self._clients:
            try:
                conn = await connect_listener(self.settings)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake_all()  # anything committed before LISTEN: clients read again
                    async for _ in conn.notifies():
                        self._wake_all()
                        if not self._clients:
                            return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarting: clients poll meanwhile
                log.warning("stream LISTEN failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        """Stop listening (the app shuts down)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
