"""Request limits of the API: body size (413), JSON nesting depth (400), per-client rates (429).

All three are settings (``HUB_API_MAX_BODY_BYTES``, ``HUB_API_MAX_JSON_DEPTH``,
``HUB_RATE_LIMIT_PER_S`` / ``HUB_RATE_LIMIT_BURST``), so load tests and benchmarks can raise them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import problem
from hub.settings import Settings

# --- rate limits ------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per key (a client's subject): ``burst`` requests at once, refilled at
    ``rate_per_s``. Thread-safe: sync views and dependencies run on a thread pool.

    Memory stays bounded by the clients active recently: a bucket idle for ``burst / rate_per_s``
    seconds has refilled completely, which is the same as having no bucket, so it is dropped.
    The buckets are kept in order of last use, so those are always at the front.
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._refill_s = burst / rate_per_s  # from empty to full
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when the request may proceed, otherwise the seconds
        until a token is available (nothing is taken then)."""
        with self._lock:
            now = self._clock()
            self._forget_full(now)
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(now - at, 0.0) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # re-inserted: the most recently used is last
            return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        while self._buckets:
            _, at = next(iter(self._buckets.values()))
            if now - at < self._refill_s:
                return
            self._buckets.popitem(last=False)


# --- body size --------------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows beyond the limit while it arrives.

    An HTTPException on purpose: FastAPI re-raises those from its body reading (anything else
    becomes a 400 "error parsing the body"), and the app's handler renders the problem+json.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_detail(max_bytes))


def too_large_detail(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes} bytes"


class BodyLimitMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which buffers bodies): 413 problem+json when the
    declared Content-Length exceeds ``max_bytes`` (before reading anything), and when a body
    without one (chunked) grows beyond it while the app receives it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            # Normally the app's own HTTPException handler answered already; this covers
            # bodies read outside a route (and apps without that handler).
            if started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(Request(scope), 413, too_large_detail(self.max_bytes))
        await response(scope, receive, send)


def content_length(scope: Scope) -> int | None:
    """The declared Content-Length, or None when absent or not a number (the server refuses
    a malformed one itself)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Limit every request body of ``app`` to ``settings.api_max_body_bytes``."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)


# --- JSON depth -------------------------------------------------------------------------------


def json_depth(raw: bytes) -> int:
    """Nesting depth of the JSON text ``raw`` (a scalar is 0, ``[]`` 1, ``[{}]`` 2), measured
    before parsing and without recursion: a hostile body costs a few vectorised passes (about
    40 ms for 4 MiB of the worst kind, 1-2 ms for a 1000-event batch) instead of a parser's
    stack (Python's json module raises RecursionError on deep input).

    Escapes are dropped first (an escaped quote or backslash cannot end a string), then the
    brackets between a quote and the next one (inside strings) are masked out; the depth is the
    highest running sum of +1 per opening and -1 per closing bracket. Malformed text gets some
    number; the parser that runs next rejects it.
    """
    if b"\\" in raw:
        # Escaped backslashes first, left to right: a \" left after that is an escaped quote.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = np.frombuffer(raw, dtype=np.uint8)
    in_string = np.logical_xor.accumulate(text == 0x22)  # parity of the quotes so far
    folded = text | 0x20  # [ ] (0x5B 0x5D) fold onto { } (0x7B 0x7D)
    brackets = text[((folded == 0x7B) | (folded == 0x7D)) & ~in_string]
    if not brackets.size:
        return 0
    # Openers (0x5B, 0x7B) have bit 1 set, closers (0x5D, 0x7D) do not: +1 and -1.
    steps = (brackets & 2).astype(np.int32) - 1
    return max(int(np.cumsum(steps, dtype=np.int32).max()), 0)
