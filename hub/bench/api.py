"""``hub bench api``: what authorization costs ``GET /v1/events?bbox=...``.

One run, one throw-away database, the same N real events, two ``hub api run`` processes on
free loopback ports: one as deployed (bearer token, access policy), one with
``HUB_API_AUTH_DISABLED=true`` (no token check, no policy; the settings refuse it off
loopback). Both are warmed up, then loaded in alternating rounds (on, off, off, on, ...) so
that drift and noise on the shared machine hit both modes alike.

The load generator is a pool of threads in this process, one keep-alive ``http.client``
connection each: the leanest client the standard library has (no per-request object layers as
in httpx or requests), and one process rather than several, because the 2 cores are shared
with the API and PostgreSQL. The GIL caps it at one core, far above what it needs: it measured
under 0.05 cores against the API's ~10 ms of CPU per request. Its CPU is reported with the
figures, so a reader can see how much of the machine it took.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson
from rich.console import Console
from rich.progress import Progress
from shapely.geometry import MultiPolygon, box
from sqlalchemy.engine import make_url

from hub.auth.clients import create_client
from hub.bench.env import bench_database_url, database, log_tail, stop_process
from hub.bench.report import BenchFailed, Row, Target, machine_info, progress_bars
from hub.bench.workload import stream
from hub.fusion.decode import decode
from hub.fusion.sink import BatchCounts, PostgresSink
from hub.settings import Settings
from hub.stack.broker import free_port
from hub.stack.local import child_env
from hub.store.db import connect, get_engine

AUTH_ON, AUTH_OFF = "auth_on", "auth_off"
MODES = (AUTH_ON, AUTH_OFF)
MODE_TEXT = {AUTH_ON: "auth on", AUTH_OFF: "auth off"}
TARGETS = {"auth_ratio_pct": Target(85, unit=" %")}  # with auth >= 85% of without
# Financial District, Tenderloin, SoMa, Nob Hill, Chinatown: a third of the SFPD incidents.
DOWNTOWN_BBOX = "-122.42,37.775,-122.39,37.799"
READY_TIMEOUT_S = 60.0
PREFILL_BATCH = 10_000
# The rate limit guards a shared API against one client; here one client IS the load.
NO_RATE_LIMIT = {"rate_limit_per_s": 1e9, "rate_limit_burst": 1_000_000_000}
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class ApiBenchOptions:
    events: int = 100_000
    seconds: float = 15.0  # per phase (one mode, one round)
    rounds: int = 3
    concurrency: int = 8
    limit: int = 100
    warmup_seconds: float = 3.0
    kind: str = "community"
    community: str = "Tenderloin"  # kind community: its own community (downtown)
    bbox: str = DOWNTOWN_BBOX
    keep: bool = False

    @property
    def target(self) -> str:
        """Path and query of every request."""
        return "/v1/events?" + urlencode({"bbox": self.bbox, "limit": self.limit})


# --- HTTP on loopback ----------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection (set-up calls, not the measured load)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fetch_token(port: int, client_id: str, secret: str) -> str:
    """A client_credentials token from the server on ``port`` (client_secret_basic)."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status, body = http_request(
        port, "POST", "/oauth/token", b"grant_type=client_credentials", headers
    )
    if status != 200:
        raise RuntimeError(f"/oauth/token answered {status}: {body[:300]!r}")
    token: str = orjson.loads(body)["access_token"]
    return token


# --- the data and the client ---------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """What fusion's decoder reads of a Kafka record."""

    value: bytes
    timestamp: int
    partition: int
    offset: int


def store_events(settings: Settings, n: int, seed: int, progress: Progress) -> None:
    """``n`` distinct real-shaped events, stored through fusion's own decode and sink (the rows
    are exactly what fusion would have written; no broker needed)."""
    task = progress.add_task("store events", total=n, info="")
    events = stream(seed, connector="bench-api", zoom=settings.tile_zoom)
    with connect(settings, autocommit=True) as conn:
        sink = PostgresSink(conn, "hub-bench-api", "bench-api")
        for start in range(0, n, PREFILL_BATCH):
            size = min(PREFILL_BATCH, n - start)
            now_ms = int(time.time() * 1000)
            batch = [
                _Record(value, now_ms, 0, start + i)
                for i, (_, value) in enumerate(itertools.islice(events, size))
            ]
            decoded = decode(batch)
            if decoded.rejects:
                raise RuntimeError(f"prefill events rejected: {decoded.rejects[0]}")
            sink.write(decoded.frame, {0: start + size}, None, BatchCounts(size, 0, 0))
            progress.update(task, completed=start + size)
        # Fresh statistics and visibility map: otherwise autovacuum may change the plan mid-run
        # and tilt the comparison toward whichever mode runs after it.
        conn.execute("VACUUM ANALYZE event")


def register_client(settings: Settings, opts: ApiBenchOptions) -> tuple[str, str]:
    """A client of ``opts.kind``; a department's jurisdiction is the benchmark's bbox."""
    kwargs: dict[str, Any] = {"kind": opts.kind, "name": "hub bench api"}
    if opts.kind == "community":
        kwargs["community_id"] = opts.community
    if opts.kind == "department":
        kwargs["jurisdiction"] = MultiPolygon([box(*map(float, opts.bbox.split(",")))])
    engine = get_engine(settings)
    try:
        with engine.begin() as conn:
            client, secret = create_client(conn, **kwargs)
    finally:
        engine.dispose()  # the database is dropped at the end: hold no connection to it
    assert secret is not None  # a secret client (no --jwk)
    return client.client_id, secret


# --- the two API servers -------------------------------------------------------------------


@dataclass(frozen=True)
class ApiServer:
    mode: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the {MODE_TEXT[self.mode]} API exited with {self.proc.returncode}; "
                f"last lines of its log:\n{log_tail(self.log_path)}"
            )

    def cpu_s(self) -> float | None:
        """CPU seconds the server process used so far (user + system), None off Linux."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_settings(settings: Settings, mode: str, port: int) -> Settings:
    return settings.model_copy(
        update={
            "api_host": "127.0.0.1",  # auth off is refused anywhere else, and we load loopback
            "api_port": port,  # also the token issuer's port: tokens are checked where issued
            "api_auth_disabled": mode == AUTH_OFF,
            **NO_RATE_LIMIT,
        }
    )


def wait_ready(server: ApiServer, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        server.check()
        with contextlib.suppress(OSError):
            if http_request(server.port, "GET", "/healthz")[0] == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {MODE_TEXT[server.mode]} API was not up in {timeout_s:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def api_server(settings: Settings, mode: str, work_dir: Path) -> Iterator[ApiServer]:
    """``hub api run`` on a free loopback port; access logs off (they would cost both modes
    the same CPU and only blur the difference); stopped on exit."""
    port = free_port()
    log_path = work_dir / f"api-{mode}.log"
    args = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "api", "run", *args],
            env=child_env(server_settings(settings, mode, port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
        )
    try:
        server = ApiServer(mode, proc, port, log_path)
        wait_ready(server)
        yield server
    finally:
        stop_process(proc)


# --- load ------------------------------------------------------------------------------------


@dataclass
class _Worker:
    """One keep-alive connection's tally (each thread writes only its own)."""

    latencies: list[float] = field(default_factory=list)  # seconds, 200 answers only
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    finished_at: float = 0.0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(what[:300])


@dataclass
class _Clock:
    """Set by the main thread before ``go``; read by the workers after it."""

    go: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0


def _work(
    port: int,
    target: str,
    headers: dict[str, str],
    ready: threading.Barrier,
    clock: _Clock,
    tally: _Worker,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        with contextlib.suppress(OSError):
            conn.connect()  # before the clock starts: a handshake is not a request
        ready.wait()
        clock.go.wait()
        perf = time.perf_counter
        while not clock.abort.is_set() and time.monotonic() < clock.deadline:
            began = perf()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                conn.close()  # http.client reconnects on the next request
                continue
            if response.status == 200:
                tally.latencies.append(perf() - began)
            else:
                tally.error(f"{response.status}: {body[:200]!r}")
    finally:
        tally.finished_at = time.monotonic()
        conn.close()


@dataclass(frozen=True)
class Phase:
    mode: str
    round: int  # 0: warm-up
    seconds: float
    latencies_ms: np.ndarray = field(repr=False)
    errors: int
    error_samples: list[str]
    server_cpu_s: float | None
    client_cpu_s: float

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "round": self.round,
            "seconds": round(self.seconds, 3),
            "requests": self.ok + self.errors,
            "errors": self.errors,
            "requests_per_s": round(self.ok / self.seconds, 1),
            "p99_ms": _pct(self.latencies_ms, 99),
        }


def run_phase(
    server: ApiServer,
    target: str,
    headers: dict[str, str],
    opts: ApiBenchOptions,
    seconds: float,
    on_tick: Callable[[float, int], None],
) -> tuple[list[_Worker], float, float, float | None]:
    """``opts.concurrency`` workers flat out for ``seconds``; returns the tallies, the wall
    time, the client's (this process's) CPU seconds and the server's CPU seconds."""
    clock = _Clock()
    ready = threading.Barrier(opts.concurrency + 1, timeout=30)
    tallies = [_Worker() for _ in range(opts.concurrency)]
    threads = [
        threading.Thread(
            target=_work, args=(server.port, target, headers, ready, clock, t), daemon=True
        )
        for t in tallies
    ]
    for t in threads:
        t.start()
    try:
        ready.wait()  # every connection open
        cpu0, server0 = time.process_time(), server.cpu_s()
        start = time.monotonic()
        clock.deadline = start + seconds
        clock.go.set()
        while any(t.is_alive() for t in threads):
            on_tick(time.monotonic() - start, sum(len(t.latencies) + t.errors for t in tallies))
            server.check()
            time.sleep(0.1)
    finally:
        # Ctrl-C or a dead server: the workers stop at their next request.
        clock.abort.set()
        clock.go.set()
        ready.abort()
        for t in threads:
            t.join()
    server1 = server.cpu_s()
    wall = max(t.finished_at for t in tallies) - start
    server_cpu = server1 - server0 if server0 is not None and server1 is not None else None
    return tallies, wall, time.process_time() - cpu0, server_cpu


def measure(
    server: ApiServer,
    headers: dict[str, str],
    opts: ApiBenchOptions,
    progress: Progress,
    round_: int,
) -> Phase:
    seconds = opts.warmup_seconds if round_ == 0 else opts.seconds
    name = f"{'warm-up' if round_ == 0 else f'round {round_}'}: {MODE_TEXT[server.mode]}"
    task = progress.add_task(name, total=seconds, info="")

    def tick(elapsed: float, requests: int) -> None:
        info = f"{requests:,} requests, {requests / max(elapsed, 1e-3):,.0f}/s"
        progress.update(task, completed=min(elapsed, seconds), info=info)

    tallies, wall, client_cpu, server_cpu = run_phase(
        server, opts.target, headers, opts, seconds, tick
    )
    progress.update(task, completed=seconds)
    latencies = np.fromiter(
        itertools.chain.from_iterable(t.latencies for t in tallies), dtype=np.float64
    )
    return Phase(
        mode=server.mode,
        round=round_,
        seconds=wall,
        latencies_ms=latencies * 1000.0,
        errors=sum(t.errors for t in tallies),
        error_samples=[s for t in tallies for s in t.samples][:MAX_ERROR_SAMPLES],
        server_cpu_s=server_cpu,
        client_cpu_s=client_cpu,
    )


def _pct(values_ms: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values_ms, q)), 2) if len(values_ms) else None


# --- checks before the load ----------------------------------------------------------------


def probe(servers: dict[str, ApiServer], token: str, target: str) -> dict[str, Any]:
    """What each server answers to one request: the auth-on one must refuse a request without
    a token (or the two modes would not differ), and both must return full pages."""
    anonymous, _ = http_request(servers[AUTH_ON].port, "GET", target)
    pages: dict[str, int | None] = {}
    for mode, headers in _headers(token).items():
        status, body = http_request(servers[mode].port, "GET", target, headers=headers)
        pages[mode] = orjson.loads(body).get("numberReturned") if status == 200 else None
    return {
        "auth_on_status_without_token": anonymous,
        "auth_on_refuses_anonymous": anonymous == 401,
        "features_per_page": pages,
    }


def _headers(token: str) -> dict[str, dict[str, str]]:
    # The auth-off server gets no token: it must not need one.
    return {AUTH_ON: {"Authorization": f"Bearer {token}"}, AUTH_OFF: {}}


# --- the whole run ---------------------------------------------------------------------------


def round_order(round_: int) -> tuple[str, ...]:
    """on, off | off, on | on, off ...: neither mode always runs first in a pair."""
    return MODES if round_ % 2 == 1 else MODES[::-1]


@dataclass
class Run:
    settings: Settings
    opts: ApiBenchOptions
    progress: Progress
    work_dir: Path
    client: tuple[str, str] = ("", "")  # (client_id, secret)
    phases: list[Phase] = field(default_factory=list)
    servers: dict[str, dict[str, int]] = field(default_factory=dict)  # mode -> pid, port

    def phase(self, server: ApiServer, round_: int) -> None:
        token = fetch_token(server.port, *self.client) if server.mode == AUTH_ON else ""
        # A fresh token per phase: a long run never outlives the token's lifetime.
        headers = _headers(token)[server.mode]
        self.phases.append(measure(server, headers, self.opts, self.progress, round_))


def _load(run: Run, seed: int) -> dict[str, Any]:
    run.client = register_client(run.settings, run.opts)  # first: a bad --community fails fast
    store_events(run.settings, run.opts.events, seed, run.progress)
    with contextlib.ExitStack() as stack:
        servers = {
            mode: stack.enter_context(api_server(run.settings, mode, run.work_dir))
            for mode in MODES
        }
        run.servers = {mode: {"pid": s.proc.pid, "port": s.port} for mode, s in servers.items()}
        checks = probe(servers, fetch_token(servers[AUTH_ON].port, *run.client), run.opts.target)
        for mode in MODES:
            run.phase(servers[mode], 0)
        for round_ in range(1, run.opts.rounds + 1):
            for mode in round_order(round_):
                run.phase(servers[mode], round_)
    return checks


@contextlib.contextmanager
def logs_dir(tag: str, keep: bool) -> Iterator[Path]:
    """A directory for the servers' logs, removed at the end unless kept. On a failure it stays
    (the logs explain most failures) and the BenchFailed raised instead names it."""
    path = Path(tempfile.mkdtemp(prefix=f"hub-bench-api-{tag}-"))
    keep_logs = keep
    try:
        yield path
    except Exception as exc:
        keep_logs = True
        raise BenchFailed(f"{type(exc).__name__}: {exc}\n(process logs kept in {path})") from exc
    finally:  # also on Ctrl-C: nothing worth keeping then
        if not keep_logs:
            shutil.rmtree(path, ignore_errors=True)


def run_api(opts: ApiBenchOptions, base: Settings, console: Console) -> dict[str, Any]:
    """Set up, measure both modes, tear down; returns the results (see ``summarise``)."""
    tag = secrets.token_hex(4)
    # api_database_url None: the servers derive their hub_api URL from the bench database.
    url = bench_database_url(base.database_url, tag)
    settings = base.model_copy(update={"database_url": url, "api_database_url": None})
    seed, started, machine = secrets.randbits(48), datetime.now(UTC), machine_info()
    with (
        logs_dir(tag, opts.keep) as work_dir,
        database(settings, drop=not opts.keep),
        progress_bars(console) as progress,
    ):
        run = Run(settings, opts, progress, work_dir)
        checks = _load(run, seed)
    context = {"tag": tag, "seed": seed, "started_at": started, "machine": machine}
    context |= {"logs_dir": str(work_dir) if opts.keep else None, "servers": run.servers}
    return summarise(opts, settings, run.phases, checks, context)


# --- results ---------------------------------------------------------------------------------


def mode_figures(phases: list[Phase], mode: str) -> dict[str, Any]:
    """One mode over its measured rounds (warm-up excluded, but its errors count)."""
    measured = [p for p in phases if p.mode == mode and p.round > 0]
    warmup_errors = sum(p.errors for p in phases if p.mode == mode and p.round == 0)
    latencies = np.concatenate([p.latencies_ms for p in measured])
    seconds = sum(p.seconds for p in measured)
    ok = len(latencies)
    server_cpu = [p.server_cpu_s for p in measured]
    cpu_ms = (
        round(1000 * sum(c for c in server_cpu if c is not None) / ok, 3)
        if ok and None not in server_cpu
        else None
    )
    return {
        "requests": ok + sum(p.errors for p in measured),
        "ok": ok,
        "errors": sum(p.errors for p in measured),
        "warmup_errors": warmup_errors,
        "error_samples": [s for p in phases if p.mode == mode for s in p.error_samples][:5],
        "seconds": round(seconds, 3),
        "requests_per_s": round(ok / seconds, 1) if seconds else 0.0,
        "latency_ms": {f"p{q}": _pct(latencies, q) for q in (50, 95, 99)}
        | {"max": round(float(latencies.max()), 2) if ok else None},
        "server_cpu_ms_per_request": cpu_ms,
        "client_cpu_cores": round(sum(p.client_cpu_s for p in measured) / seconds, 3)
        if seconds
        else None,
    }


def summarise(
    opts: ApiBenchOptions,
    settings: Settings,
    phases: list[Phase],
    checks: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document: headline keys first, then each mode, each phase and the set-up."""
    modes = {mode: mode_figures(phases, mode) for mode in MODES}
    on, off = modes[AUTH_ON]["requests_per_s"], modes[AUTH_OFF]["requests_per_s"]
    ratio = on / off if off else None
    errors = sum(m["errors"] + m["warmup_errors"] for m in modes.values())
    checks = checks | {"errors": errors}
    started: datetime = context["started_at"]
    return {
        "bench": "api",
        "events": opts.events,
        "requests_per_s": {mode: modes[mode]["requests_per_s"] for mode in MODES},
        "ratio": round(ratio, 4) if ratio is not None else None,
        "p99_ms": {mode: modes[mode]["latency_ms"]["p99"] for mode in MODES},
        "run": context["tag"],
        "seed": context["seed"],
        "logs_dir": context["logs_dir"],
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "targets": {k: t.as_json() for k, t in TARGETS.items()},
        "passed": {"auth_ratio_pct": TARGETS["auth_ratio_pct"].met(_percent(ratio))},
        "checks": checks,
        "checks_ok": errors == 0 and checks["auth_on_refuses_anonymous"],
        "modes": modes,
        "phases": [p.as_json() for p in phases],
        "servers": context["servers"],
        "settings": _settings_used(opts, settings),
        "machine": context["machine"],
    }


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else round(100 * ratio, 1)


def _settings_used(opts: ApiBenchOptions, settings: Settings) -> dict[str, Any]:
    used = asdict(opts)
    used.update(
        request=f"GET {opts.target}",
        principal=f"{opts.kind} ({opts.community})" if opts.kind == "community" else opts.kind,
        database=make_url(settings.database_url).database,
        load_generator=f"{opts.concurrency} threads in one process, keep-alive http.client",
        api_server="hub api run (uvicorn, 1 process), access log off",
        rate_limit_per_s=NO_RATE_LIMIT["rate_limit_per_s"],
        rate_limit_burst=NO_RATE_LIMIT["rate_limit_burst"],
        round_order=[list(round_order(r)) for r in range(1, opts.rounds + 1)],
    )
    return used


def table_rows(result: dict[str, Any]) -> list[Row]:
    """Requests/s both ways and their ratio against the target, with the latencies and CPU
    that explain it, and the checks that make the comparison valid."""
    on, off = result["modes"][AUTH_ON], result["modes"][AUTH_OFF]
    checks, pct = result["checks"], _percent(result["ratio"])
    rows = [
        Row("auth on", f"requests/s ({result['settings']['principal']})",
            _num(on["requests_per_s"])),
        Row("auth off", "requests/s (no token, no policy)", _num(off["requests_per_s"])),
        Row("both", "with auth / without (requests/s)", "-" if pct is None else f"{pct:.1f} %",
            TARGETS["auth_ratio_pct"], pct),
    ]  # fmt: skip
    for mode, figures in ((AUTH_ON, on), (AUTH_OFF, off)):
        lat = figures["latency_ms"]
        rows += [
            Row(MODE_TEXT[mode], "p50 / p95 ms", f"{_ms(lat['p50'])} / {_ms(lat['p95'])}"),
            Row(MODE_TEXT[mode], "p99 ms", _ms(lat["p99"])),
            Row(MODE_TEXT[mode], "API process CPU ms per request",
                _ms(figures["server_cpu_ms_per_request"])),
        ]  # fmt: skip
    pages = checks["features_per_page"]
    errors, refused = checks["errors"], checks["auth_on_refuses_anonymous"]
    client_cores = max(on["client_cpu_cores"] or 0, off["client_cpu_cores"] or 0)
    return [
        *rows,
        Row("both", "features per page (on / off)", f"{pages[AUTH_ON]} / {pages[AUTH_OFF]}"),
        Row("both", "load generator CPU (cores, at most)", f"{client_cores:.2f}"),
        Row("both", "errors (non-200 answers)", f"{errors:,}", check=errors == 0),
        Row("auth on", "refuses a request without a token",
            str(checks["auth_on_status_without_token"]), check=refused),
    ]  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
