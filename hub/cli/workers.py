"""What the long-running workers' commands share (``hub fusion run``, ``hub notify run``):
stop on SIGTERM/SIGINT, and serve Prometheus metrics once ready (the readiness signal
``hub up`` waits for)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server


def on_signals(stop: Callable[[], None], log: logging.Logger) -> None:
    """Call ``stop`` on SIGTERM and SIGINT."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def metrics_on_ready(
    port: int, registry: CollectorRegistry, log: logging.Logger, name: str
) -> Callable[[], None]:
    """The ``on_ready`` of a worker: serve its metrics on 127.0.0.1:``port`` (0: none)."""

    def _ready() -> None:
        if port:
            start_http_server(port, addr="127.0.0.1", registry=registry)
        log.info(f"{name} ready", extra={"metrics_port": port})

    return _ready
