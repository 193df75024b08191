"""The request-limit machinery alone (no database, no broker): the per-client token bucket, the
JSON depth scan and the body-size middleware."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from hub.api.limits import BodyLimitMiddleware, BodyTooLarge, RateLimiter, json_depth

# --- RateLimiter ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_wait_until_one_token() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token takes 1/rate
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # half refilled: half the wait left
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_refusals_take_nothing_and_the_bucket_caps_at_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    limiter.take("a"), limiter.take("a")
    for _ in range(5):  # hammering while empty does not dig a hole
        assert limiter.take("a") > 0
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    clock.now += 3600  # a long pause refills to the burst, no more
    assert [limiter.take("a") for _ in range(3)].count(0.0) == 2


def test_clients_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_idle_full_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock)  # empty to full in 0.5 s
    for n in range(1000):
        limiter.take(f"client-{n}")
    assert len(limiter) == 1000
    clock.now += 0.49
    limiter.take("late")
    assert len(limiter) == 1001  # not yet refilled: still remembered
    clock.now += 0.02
    limiter.take("late")
    assert len(limiter) == 1  # only the one used within the last 0.5 s


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1.0, 0)


def test_threads_share_one_bucket_exactly() -> None:
    limiter = RateLimiter(1e-6, 50, clock=Clock())  # frozen clock: exactly 50 tokens, ever
    allowed: list[int] = []

    def hammer() -> None:
        allowed.append(sum(limiter.take("shared") == 0.0 for _ in range(100)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50


class ReferenceBucket:
    """The token bucket as a textbook would write it: every key kept forever."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        tokens, at = self.state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self.state[key] = (tokens - 1, now)
            return 0.0
        self.state[key] = (tokens, now)
        return (1 - tokens) / self.rate


# Powers of two and steps of 1/64 s: every float below is exact, so eviction must not change
# a single answer (a rounding difference would be a false alarm).
@settings(max_examples=100, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 8.0]),
    burst=st.integers(1, 6),
    ops=st.lists(st.tuples(st.integers(0, 128), st.sampled_from("abcd")), max_size=80),
)
def test_eviction_never_changes_an_answer(
    rate: float, burst: int, ops: list[tuple[int, str]]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock=clock)
    reference = ReferenceBucket(rate, burst)
    allowed: dict[str, list[float]] = {}
    for step, key in ops:
        clock.now += step / 64
        wait = limiter.take(key)
        assert wait == reference.take(key, clock.now)
        assert wait >= 0
        if wait == 0:
            allowed.setdefault(key, []).append(clock.now)
    # Over any window, a client got at most burst + rate * window requests through.
    for times in allowed.values():
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - start) + 1e-9


# --- json_depth -------------------------------------------------------------------------------


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


# Strings full of what could fool a scanner: brackets, quotes, backslashes, escapes.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\/ ab\n\u00e9\u4e2d'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | tricky_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values, ascii_only=st.booleans(), indent=st.sampled_from([None, 2]))
def test_depth_matches_a_recursive_walk(value: Any, ascii_only: bool, indent: int | None) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert json_depth(raw) == reference_depth(value)
    assert json_depth(orjson.dumps(value)) == reference_depth(value)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b'"[[["', 0),
        (b"[]", 1),
        (b'[{"a": [1, {"b": []}]}]', 5),
        (rb'["\\", "[", "\\\\", {"k\"[": "]"}]', 2),  # escaped backslash, then a real quote
        (rb'{"a": "\\\\\"[[["}', 1),  # \\ then \" : still inside the string
        (b"]]][", 0),  # malformed: some number, the parser rejects it
    ],
)
def test_depth_examples(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


def test_hostile_depth_is_measured_fast_without_recursion() -> None:
    cases = [
        b"[" * 4_000_000,  # an unclosed tower, 4 MB
        b"[" * 2_000_000 + b"]" * 2_000_000,
        b'"' * 4_000_000,  # a quote storm
        b'x"\\"' * 1_000_000,  # escapes everywhere
        b"[" + b"[]," * 1_300_000 + b"[]]",  # wide, not deep
    ]
    for raw in cases:
        start = time.perf_counter()
        json_depth(raw)
        assert time.perf_counter() - start < 1.0
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


# --- body-size middleware ---------------------------------------------------------------------

LIMIT = 1024


async def read_everything(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body, then answers how many bytes it got."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def http_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "headers": headers,
    }


def run(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    chunks: list[bytes],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, bytes, int]:
    """(status, body, chunks the app pulled) of one request through the middleware."""
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = BodyLimitMiddleware(app, max_bytes=LIMIT)
    asyncio.run(middleware(http_scope(headers or []), receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, len(chunks) - len(pending)


def test_a_body_within_the_limit_passes() -> None:
    assert run(read_everything, [b"x" * 600, b"x" * 424]) == (200, b"1024", 2)
    assert run(read_everything, [b"x" * 10], [(b"content-length", b"10")])[0] == 200


def test_a_declared_length_beyond_the_limit_is_refused_unread() -> None:
    status, body, pulled = run(read_everything, [b"x" * 2000], [(b"content-length", b"2000")])
    assert (status, pulled) == (413, 0)
    problem = json.loads(body)
    assert problem["status"] == 413
    assert problem["detail"] == f"the request body is larger than {LIMIT} bytes"
    assert problem["instance"] == "/v1/events"


def test_a_chunked_body_is_cut_off_when_it_grows_beyond_the_limit() -> None:
    chunks = [b"x" * 500] * 10
    status, body, pulled = run(read_everything, chunks)
    assert (status, pulled) == (413, 3)  # refused at the chunk that crossed 1024 bytes
    assert json.loads(body)["status"] == 413


def test_a_body_too_large_after_the_answer_started_is_not_hidden() -> None:
    async def answer_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    with pytest.raises(BodyTooLarge):
        run(answer_first, [b"x" * 800] * 3)


def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        pass

    asyncio.run(BodyLimitMiddleware(app, 1024)({"type": "lifespan"}, nothing, ignore))
    assert seen == ["lifespan"]
