"""The local stack: broker -> migrations -> fusion worker -> API, in dependency order.

``up()`` starts only what is missing or dead and returns once everything answers its readiness
probe; ``down()`` stops what our pid files name, in reverse order; ``status()`` reports each
service. Children get ``os.environ`` plus the HUB_* values of the Settings object in use, so a
stack brought up with test settings (temp state dir, free ports, throw-away database) runs on
exactly those.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import make_url

from hub.bus.kafka import ensure_topics
from hub.errors import HubError
from hub.settings import Settings, get_settings
from hub.stack.broker import broker_command, port_open
from hub.stack.probes import (
    api_url,
    broker_answers,
    broker_is_local,
    http_ok,
    metrics_url,
    schema_at_head,
    topics_present,
)
from hub.stack.process import PidRecord, Processes, StopOutcome, uptime_of
from hub.store.migrate import upgrade

log = logging.getLogger(__name__)

State = Literal["running", "stopped", "external", "done", "pending"]
ORDER = ("broker", "migrations", "fusion", "notify", "api")
MANAGED = ("broker", "fusion", "notify", "api")  # the ones with a process (migrations is one-shot)
READY_TIMEOUT_S = {"broker": 30.0, "fusion": 60.0, "notify": 30.0, "api": 60.0}
STOP_TIMEOUT_S = 10.0

# Progress callback: (service, message, finished). The CLI turns these into spinner lines.
Progress = Callable[[str, str, bool], None]
# How ``up`` found or brought a service: only "started" ones are ours to stop afterwards.
Outcome = Literal["started", "running", "adopted", "external", "migrated"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    ready: bool
    pid: int | None = None
    address: str = ""
    uptime_s: float | None = None
    detail: str = ""


OUTCOME_TEXT: dict[Outcome, str] = {
    "started": "started, ready",
    "running": "already running, ready",
    "adopted": "adopted the broker already listening (hub down leaves it running)",
    "external": "external Kafka answers (not managed by hub)",
    "migrated": "schema at head, topics present",
}


@dataclass
class UpReport:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    services: list[ServiceStatus] = field(default_factory=list)

    @property
    def started(self) -> tuple[str, ...]:
        """What this call started: a caller that wants to leave things as it found them
        (``hub demo``) passes this to ``down(services=...)``."""
        return tuple(n for n, o in self.outcomes.items() if o == "started")


class StackError(HubError, RuntimeError):
    """A service did not come up; carries its name and the tail of its log."""

    def __init__(self, service: str, message: str, log_tail: str = "") -> None:
        self.service, self.log_tail = service, log_tail
        text = f"{service}: {message}"
        super().__init__(f"{text}\n--- last lines of its log ---\n{log_tail}" if log_tail else text)


# --- settings handed to children ------------------------------------------------------------


def child_env(settings: Settings) -> dict[str, str]:
    """``os.environ`` plus HUB_* for every field of ``settings`` (the object wins over the env)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name, value in settings.model_dump(mode="json").items():
        key = f"HUB_{name.upper()}"
        if name == "state_dir":
            value = str(Path(value).resolve())  # children must not depend on their cwd
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


def processes(settings: Settings) -> Processes:
    return Processes(Path(settings.state_dir))


# --- long-running services ------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A managed long-running process: how to start it, where it listens, when it is ready."""

    name: str
    command: Callable[[Settings], list[str]]
    port: Callable[[Settings], int]  # 0: listens nowhere
    ready: Callable[[Settings], bool]
    address: Callable[[Settings], str]


BROKER = Service(
    "broker",
    command=lambda s: broker_command(s.broker_port),
    port=lambda s: s.broker_port,
    ready=broker_answers,
    address=lambda s: s.kafka_bootstrap,
)


def _worker(name: str, port: Callable[[Settings], int]) -> Service:
    """A worker (``hub NAME run``) whose metrics endpoint is its readiness signal; without
    one there is nothing to ask: a live process is all we can know."""
    return Service(
        name,
        command=lambda s: [sys.executable, "-m", "hub", name, "run"],
        port=port,
        ready=lambda s: http_ok(url) if (url := metrics_url(port(s))) else True,
        address=lambda s: metrics_url(port(s)) or "metrics disabled",
    )


FUSION = _worker("fusion", lambda s: s.fusion_metrics_port)
NOTIFY = _worker("notify", lambda s: s.notify_metrics_port)
API = Service(
    "api",
    command=lambda s: [sys.executable, "-m", "hub", "api", "run"],
    port=lambda s: s.api_port,
    ready=lambda s: http_ok(f"{api_url(s)}/readyz"),
    address=api_url,
)
SERVICES = {s.name: s for s in (BROKER, FUSION, NOTIFY, API)}


def _wait_ready(svc: Service, settings: Settings, procs: Processes, timeout_s: float) -> None:
    """Poll the readiness probe; fail fast, with the log tail, when the process dies meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not svc.ready(settings):
        if not procs.is_running(svc.name):
            raise StackError(svc.name, "exited during start-up", procs.tail(svc.name))
        if time.monotonic() > deadline:
            raise StackError(svc.name, f"not ready after {timeout_s:.0f} s", procs.tail(svc.name))
        time.sleep(0.2)


def _ensure(svc: Service, settings: Settings, procs: Processes, progress: Progress) -> Outcome:
    """Bring ``svc`` to ready, starting it when it is not running."""
    timeout = READY_TIMEOUT_S[svc.name]
    if procs.is_running(svc.name):
        progress(svc.name, "running, checking readiness", False)
        _wait_ready(svc, settings, procs, timeout)  # it may still be starting (another `up`)
        return "running"
    port = svc.port(settings)
    if port and port_open(port):
        raise StackError(
            svc.name,
            f"port {port} is in use by a process hub did not start; stop it or choose another"
            f" port (HUB_* settings)",
        )
    progress(svc.name, "starting", False)
    procs.start(svc.name, svc.command(settings), child_env(settings))
    progress(svc.name, "waiting until ready", False)
    _wait_ready(svc, settings, procs, timeout)
    return "started"


def _ensure_broker(settings: Settings, procs: Processes, progress: Progress) -> Outcome:
    """The broker, unless Kafka is external or already listening (then adopted, not owned)."""
    if not broker_is_local(settings):
        progress("broker", f"external Kafka at {settings.kafka_bootstrap}", False)
        if not broker_answers(settings, timeout_s=10.0):
            raise StackError(
                "broker", f"external Kafka at {settings.kafka_bootstrap} does not answer"
            )
        return "external"
    if not procs.is_running("broker") and port_open(settings.broker_port):
        if not broker_answers(settings):
            raise StackError("broker", f"port {settings.broker_port} is open but is not Kafka")
        log.info("adopted a running broker", extra={"bootstrap": settings.kafka_bootstrap})
        return "adopted"
    return _ensure(BROKER, settings, procs, progress)


def _migrate(settings: Settings, progress: Progress) -> Outcome:
    # Always run: both steps are idempotent, and the broker keeps topics in memory only, so a
    # broker restarted behind our back (or by us) needs its topics again.
    progress("migrations", "database schema and topics", False)
    try:
        upgrade(settings)
        ensure_topics(settings)
    except Exception as exc:
        raise StackError("migrations", f"{type(exc).__name__}: {exc}") from exc
    return "migrated"


@contextlib.contextmanager
def _stack_lock(settings: Settings) -> Iterator[None]:
    """One ``up`` at a time per state dir: two racing ``up``s would start two brokers."""
    run_dir = Path(settings.state_dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _quiet(_service: str, _message: str, _finished: bool) -> None:
    return None


def up(settings: Settings | None = None, progress: Progress | None = None) -> UpReport:
    """Start what is missing or dead; return once every service is ready.

    Raises StackError naming the service (and the tail of its log) when one does not come up.
    """
    settings = settings or get_settings()
    progress = progress or _quiet
    procs = processes(settings)
    report = UpReport()
    steps: list[tuple[str, Callable[[], Outcome]]] = [
        ("broker", lambda: _ensure_broker(settings, procs, progress)),
        ("migrations", lambda: _migrate(settings, progress)),
        ("fusion", lambda: _ensure(FUSION, settings, procs, progress)),
        ("notify", lambda: _ensure(NOTIFY, settings, procs, progress)),
        ("api", lambda: _ensure(API, settings, procs, progress)),
    ]
    with _stack_lock(settings):
        for name, step in steps:
            outcome = step()
            report.outcomes[name] = outcome
            progress(name, OUTCOME_TEXT[outcome], True)
    log.info("stack up", extra={"outcomes": report.outcomes})
    report.services = status(settings)
    return report


def down(
    settings: Settings | None = None,
    services: tuple[str, ...] = MANAGED,
    timeout_s: float = STOP_TIMEOUT_S,
) -> dict[str, StopOutcome]:
    """Stop, in reverse order, the services among ``services`` that our pid files name.

    An adopted or external broker has no pid file and is left alone.
    """
    settings = settings or get_settings()
    procs = processes(settings)
    outcomes: dict[str, StopOutcome] = {}
    # No stack lock here: `hub down` must be able to abort an `up` stuck waiting for readiness.
    for name in reversed(MANAGED):
        if name in services:
            outcomes[name] = procs.stop(name, timeout_s)
    log.info("stack down", extra={"outcomes": outcomes})
    return outcomes


# --- status ---------------------------------------------------------------------------------


def _managed_status(svc: Service, settings: Settings, record: PidRecord | None) -> ServiceStatus:
    if record is None:
        return ServiceStatus(svc.name, "stopped", False, address=svc.address(settings))
    return ServiceStatus(
        svc.name,
        "running",
        svc.ready(settings),
        record.pid,
        svc.address(settings),
        uptime_of(record.start_ticks),
    )


def _broker_status(settings: Settings, procs: Processes) -> ServiceStatus:
    record = procs.record("broker")
    if record is not None or not broker_is_local(settings):
        st = _managed_status(BROKER, settings, record)
        if record is None:  # configured external Kafka
            return ServiceStatus(
                "broker",
                "external",
                st.ready,
                address=st.address,
                detail="external Kafka (not managed by hub)",
            )
        return st
    if port_open(settings.broker_port) and broker_answers(settings):
        return ServiceStatus(
            "broker",
            "external",
            True,
            address=settings.kafka_bootstrap,
            detail="adopted: started outside hub, hub down leaves it",
        )
    return _managed_status(BROKER, settings, None)


def _migrations_status(settings: Settings, broker_ready: bool) -> ServiceStatus:
    address = make_url(settings.database_url).render_as_string(hide_password=True)
    at_head, why = schema_at_head(settings)
    topics = broker_ready and topics_present(settings)
    if not topics:
        missing = "topics missing" if broker_ready else "topics unknown (broker down)"
        why = "; ".join(w for w in (why, missing) if w)
    ready = at_head and topics
    return ServiceStatus(
        "migrations", "done" if ready else "pending", ready, address=address, detail=why
    )


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    """Each service in dependency order: state, pid, address, uptime, readiness."""
    settings = settings or get_settings()
    procs = processes(settings)
    broker = _broker_status(settings, procs)
    result = [broker, _migrations_status(settings, broker.ready)]
    for svc in (FUSION, NOTIFY, API):
        result.append(_managed_status(svc, settings, procs.record(svc.name)))
    return result


def all_ready(services: list[ServiceStatus]) -> bool:
    return all(s.ready for s in services)
