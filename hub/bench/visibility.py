"""Send -> incident visible: how long until a report's incident can be read through the API.

While the paced producer of the picture's lag phase runs, a follower takes every N-th of its
events (their ids follow from the producer's live count, ``workload.stream_id``) and asks a
real ``hub api run`` for them, as a user would: ``GET /v1/incidents?report=<ids>`` with the
bearer token of a registered analyst, every ``interval`` for all the ids not yet seen, in
requests of at most ``MAX_REPORTS``. An id is visible when an answer's ``matched_reports``
holds it; the time is when that answer arrived (so the figure includes the API's own time and
up to one poll interval of waiting). The send time is the event's Kafka timestamp as stored
(``event.sent_at``), the clock the send -> stored lag uses too.

The follower is a thread of the measuring process with one keep-alive connection: at ~100 ids
a second it sends a few requests per interval, a small load next to fusion's.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson

from hub.api.incidents import MAX_REPORTS
from hub.auth.clients import create_client
from hub.bench.api import AUTH_ON, api_server, fetch_token
from hub.bench.pipeline import Run
from hub.bench.producers import ProducerJob
from hub.bench.workload import stream_id
from hub.settings import Settings
from hub.store.db import get_engine

POLL_INTERVAL_S = 0.05
SETTLE_S = 30.0  # after the last send, how long stragglers may take to become visible
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class Reader:
    """The API the follower reads, and how it authenticates."""

    port: int
    headers: dict[str, str]


def _register_analyst(settings: Settings) -> tuple[str, str]:
    engine = get_engine(settings)
    try:
        with engine.begin() as conn:
            client, secret = create_client(conn, kind="analyst", name="hub bench ingest")
    finally:
        engine.dispose()  # the database is dropped at the end: hold no connection to it
    assert secret is not None  # a secret client (no key)
    return client.client_id, secret


@contextlib.contextmanager
def api_reader(settings: Settings, work_dir: Path) -> Iterator[Reader]:
    """``hub api run`` on the bench database (a free loopback port, rate limits raised: the
    follower does the reading of many users) and an analyst's token for it."""
    # No api_database_url: the server derives its hub_api URL from the bench database.
    server_base = settings.model_copy(update={"api_database_url": None})
    client = _register_analyst(settings)
    with api_server(server_base, AUTH_ON, work_dir) as server:
        token = fetch_token(server.port, *client)
        yield Reader(server.port, {"Authorization": f"Bearer {token}"})


class Sampler:
    """Every ``every``-th event of a paced producer's stream, by id, as it is sent."""

    def __init__(self, job: ProducerJob, every: int) -> None:
        self.job, self.every = job, every
        self.next = 0  # index of the next event to follow

    def new(self, sent: int) -> list[str]:
        """Ids of the followed events among the first ``sent`` not returned before."""
        j = self.job
        indices = range(self.next, sent, self.every)
        ids = [stream_id(j.seed, j.connector, j.part, i) for i in indices]
        self.next += len(ids) * self.every
        return ids


class Follower:
    """Polls the API for the sampled events until each is visible (see the module doc)."""

    def __init__(self, reader: Reader, sampler: Sampler, interval_s: float = POLL_INTERVAL_S):
        self.reader, self.sampler, self.interval_s = reader, sampler, interval_s
        self.pending: dict[str, None] = {}  # ids not seen yet, in send order
        self.followed: list[str] = []
        self.visible_at: dict[str, float] = {}  # time.time() of the answer that held it
        self.request_ms: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.seconds = 0.0  # how long it followed
        self._sent: Callable[[], int] = lambda: 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, sent: Callable[[], int]) -> None:
        """Start following a producer whose live count is ``sent()``."""
        self._sent = sent
        self._thread = threading.Thread(target=self._loop, name="bench-follower", daemon=True)
        self._thread.start()

    def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until every followed event was seen (the producer has finished), then stop."""
        deadline = time.monotonic() + timeout_s
        while self._thread is not None and self._thread.is_alive():
            caught_up = self.sampler.next >= self._sent()
            if (caught_up and not self.pending) or time.monotonic() > deadline:
                break
            time.sleep(self.interval_s)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.reader.port, timeout=30)
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                self._cycle(conn)
                # the next cycle an interval after this one began (not after it ended)
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))
        finally:
            self.seconds = time.monotonic() - started
            conn.close()

    def _cycle(self, conn: http.client.HTTPConnection) -> None:
        for event_id in self.sampler.new(self._sent()):
            self.pending[event_id] = None
            self.followed.append(event_id)
        ids = list(self.pending)
        for start in range(0, len(ids), MAX_REPORTS):
            self._ask(conn, ids[start : start + MAX_REPORTS])

    def _ask(self, conn: http.client.HTTPConnection, ids: list[str]) -> None:
        target = "/v1/incidents?" + urlencode({"report": ",".join(ids), "limit": len(ids)})
        began = time.perf_counter()
        try:
            conn.request("GET", target, headers=self.reader.headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._error(f"{type(exc).__name__}: {exc}")
            conn.close()  # http.client reconnects on the next request
            return
        now = time.time()
        self.request_ms.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            self._error(f"{response.status}: {body[:200]!r}")
            return
        for feature in orjson.loads(body)["features"]:
            for event_id in feature["matched_reports"]:
                if event_id in self.pending:
                    del self.pending[event_id]
                    self.visible_at[event_id] = now

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what[:300])


_SENT = """
SELECT event_id::text, extract(epoch FROM sent_at)::float8, extract(epoch FROM ingested_at)::float8
FROM event WHERE event_id = ANY(%s::uuid[])
"""


def visible_figures(run: Run, follower: Follower) -> dict[str, Any]:
    """Send -> visible (and stored -> visible) percentiles of the followed events, the
    follower's own requests, and the check: every followed event stored and seen."""
    rows = run.store.conn.execute(_SENT, (follower.followed,)).fetchall()
    stored = {event_id: (sent, ingested) for event_id, sent, ingested in rows}
    seen = [e for e in follower.followed if e in follower.visible_at and e in stored]
    lag = np.array([follower.visible_at[e] - stored[e][0] for e in seen]) * 1000
    # from the insert (ingested_at): the picture's stages, the commit, the poll and the API
    after_stored = np.array([follower.visible_at[e] - stored[e][1] for e in seen]) * 1000
    requests = np.array(follower.request_ms)
    missing = len(follower.followed) - len(seen)
    return {
        "sample_every": follower.sampler.every,
        "followed": len(follower.followed),
        "stored": len(stored),
        "visible": len(seen),
        "never_visible": missing,
        **{f"p{q}_ms": _pct(lag, q) for q in (50, 95, 99)},
        "max_ms": _pct(lag, 100),
        "after_stored_p50_ms": _pct(after_stored, 50),
        "after_stored_p99_ms": _pct(after_stored, 99),
        "poll_interval_ms": round(follower.interval_s * 1000),
        "requests": len(requests) + follower.errors,
        "requests_per_s": round(len(requests) / follower.seconds, 1) if follower.seconds else None,
        "request_errors": follower.errors,
        "error_samples": follower.error_samples,
        "request_p50_ms": _pct(requests, 50),
        "request_p99_ms": _pct(requests, 99),
        "ok": missing == 0 and follower.errors == 0 and len(stored) == len(follower.followed),
    }


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None
