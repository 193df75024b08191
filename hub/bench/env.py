"""The benchmark's own environment: a broker, a throw-away database with the SF communities,
the topics, and the fusion worker as a real subprocess.

Everything is started inside context managers, so whatever was started is stopped again (and
the database dropped) on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka.errors import KafkaError, UnknownTopicOrPartitionError
from sqlalchemy.engine import make_url

from hub.bench.workload import NEIGHBOURHOODS
from hub.bus.kafka import admin, ensure_topics, wait_for_broker
from hub.errors import HubError
from hub.settings import Settings
from hub.stack.broker import free_port, port_open, start_broker
from hub.stack.local import child_env
from hub.store.communities import import_communities
from hub.store.db import connect
from hub.store.migrate import drop_database, upgrade

STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class EnvOptions:
    tag: str  # names this run's database, topics and consumer group
    work_dir: Path  # logs of the processes it starts
    bootstrap: str | None = None  # an existing Kafka; None: start a broker of our own
    database_url: str | None = None  # an existing database (never dropped); None: a new one
    keep: bool = False  # leave the new database (and topics) in place


# HUB_BENCH_FUSION_LOG_LEVEL=DEBUG keeps each batch's stage times in the fusion log (--keep).
_FUSION_LOG_LEVEL = os.environ.get("HUB_BENCH_FUSION_LOG_LEVEL", "WARNING")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL when it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def own_broker(log_path: Path, timeout_s: float = 30.0) -> Iterator[str]:
    port = free_port()
    proc = start_broker(port, log_path)
    try:
        # Wait for the port first: kafka-python logs every refused connection as an error.
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the broker did not start:\n{log_tail(log_path)}")
            time.sleep(0.05)
        bootstrap = f"127.0.0.1:{port}"
        wait_for_broker(Settings(kafka_bootstrap=bootstrap))
        yield bootstrap
    finally:
        stop_process(proc)


def bench_database_url(base_url: str, tag: str) -> str:
    """Same server and credentials as ``base_url``, a database of its own."""
    url = make_url(base_url).set(database=f"hub_bench_{tag}")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def database(settings: Settings, *, drop: bool) -> Iterator[None]:
    """Schema at head and the 41 SF neighbourhoods as communities."""
    try:
        upgrade(settings)
        with connect(settings) as conn:
            import_communities(conn, NEIGHBOURHOODS, "nhood", "nhood")
        yield
    finally:
        if drop:
            drop_database(settings)


@contextlib.contextmanager
def topics(settings: Settings, *, delete: bool) -> Iterator[None]:
    ensure_topics(settings)
    try:
        yield
    finally:
        if delete:  # only on a broker we do not own: ours vanishes with its process
            with contextlib.suppress(KafkaError, UnknownTopicOrPartitionError):
                client = admin(settings)
                try:
                    client.delete_topics([settings.events_topic, settings.dlq_topic])
                finally:
                    client.close()


@contextlib.contextmanager
def bench_env(base: Settings, opts: EnvOptions) -> Iterator[Settings]:
    """Settings of an isolated environment that exists for the duration of the block."""
    with contextlib.ExitStack() as stack:
        bootstrap = opts.bootstrap or stack.enter_context(own_broker(opts.work_dir / "broker.log"))
        update: dict[str, object] = {
            "kafka_bootstrap": bootstrap,
            "database_url": opts.database_url or bench_database_url(base.database_url, opts.tag),
            "consumer_group": f"hub-bench-{opts.tag}",
            "fusion_metrics_port": 0,  # each worker gets a free port (``fusion_process``)
        }
        if opts.bootstrap:  # a shared broker: topics of our own, not hub.events.v1
            update |= {
                "events_topic": f"bench.{opts.tag}.events",
                "dlq_topic": f"bench.{opts.tag}.dlq",
            }
        settings = base.model_copy(update=update)
        stack.enter_context(database(settings, drop=not (opts.keep or opts.database_url)))
        stack.enter_context(topics(settings, delete=bool(opts.bootstrap) and not opts.keep))
        yield settings


class FusionDied(HubError, RuntimeError):
    pass


@dataclass
class FusionProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float  # time.monotonic() just before the process was started
    metrics_port: int  # its Prometheus endpoint (loopback): ``hub.bench.steps``

    def check(self) -> None:
        """Raise (with the tail of its log) when the worker is no longer running."""
        if self.proc.poll() is not None:
            raise FusionDied(
                f"fusion worker exited with {self.proc.returncode}; last lines of its log:\n"
                + log_tail(self.log_path)
            )


@contextlib.contextmanager
def fusion_process(settings: Settings, log_path: Path) -> Iterator[FusionProcess]:
    """``hub fusion run`` on exactly these settings; SIGTERM (finish the batch) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"fusion_metrics_port": free_port()})
    with log_path.open("ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "fusion", "run", "--log-level", _FUSION_LOG_LEVEL],
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
        )
    try:
        yield FusionProcess(proc, log_path, started, settings.fusion_metrics_port)
    finally:
        stop_process(proc)
