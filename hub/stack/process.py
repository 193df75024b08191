"""Managed processes: detached children with a pid file and a log under the state directory.

A pid file holds the pid AND the process start time (field 22 of ``/proc/PID/stat``). Pids are
recycled, so a pid alone could name a stranger: we only ever treat a process as ours, report
it running or signal it, when both match. Anything else found in a pid file is stale and removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

StopOutcome = Literal["stopped", "killed", "not running"]

# Popen objects of the children this process started: kept so they are reaped when they die
# (a zombie would still have a /proc entry) and so Python does not warn about dropping them.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int  # /proc/PID/stat starttime: clock ticks after boot
    command: list[str]
    started_at: float  # wall clock, for humans


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the LAST ')'.
    fields = stat.rpartition(")")[2].split()
    state, start = fields[0], fields[19]  # fields 3 and 22 of proc(5)
    return None if state in ("Z", "X") else int(start)


def uptime_of(start_ticks: int) -> float:
    """Seconds since a process with this start time began."""
    boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


class Processes:
    """The managed processes of one state directory (``run/NAME.pid``, ``logs/NAME.log``)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> PidRecord:
        """Start ``command`` in its own session (a Ctrl-C in our terminal must not reach it)."""
        if (current := self.record(name)) is not None:
            raise RuntimeError(f"{name} is already running (pid {current.pid})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as out:
            child = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        _children[child.pid] = child
        ticks = proc_start_ticks(child.pid)
        if ticks is None:  # died before we could look: report it like any early death
            child.wait()
            raise RuntimeError(f"{name} exited at once with code {child.returncode}")
        record = PidRecord(child.pid, ticks, list(command), time.time())
        self._write(name, record)
        log.info("process started", extra={"service": name, "pid": child.pid})
        return record

    def _write(self, name: str, record: PidRecord) -> None:
        # Write then rename: a reader never sees half a pid file.
        tmp = self.pid_path(name).with_suffix(".pid.tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(self.pid_path(name))

    def _read(self, name: str) -> PidRecord | None:
        try:
            data = json.loads(self.pid_path(name).read_text())
            return PidRecord(
                int(data["pid"]),
                int(data["start_ticks"]),
                list(data["command"]),
                float(data["started_at"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable pid file removed", extra={"service": name})
            self.pid_path(name).unlink(missing_ok=True)
            return None

    def record(self, name: str) -> PidRecord | None:
        """The pid record of ``name`` when that very process still runs; stale files are removed."""
        record = self._read(name)
        if record is None:
            return None
        _reap(record.pid)
        if proc_start_ticks(record.pid) == record.start_ticks:
            return record
        log.info("stale pid file removed", extra={"service": name, "pid": record.pid})
        self.pid_path(name).unlink(missing_ok=True)
        return None

    def is_running(self, name: str) -> bool:
        return self.record(name) is not None

    def stop(self, name: str, timeout: float = 10.0) -> StopOutcome:
        """SIGTERM, then SIGKILL after ``timeout`` s; only a process whose pid file we wrote."""
        record = self.record(name)
        if record is None:
            return "not running"
        outcome: StopOutcome = "stopped"
        self._signal(record.pid, signal.SIGTERM)
        if not self._wait_gone(record, timeout):
            log.warning(
                "no exit after SIGTERM, killing", extra={"service": name, "pid": record.pid}
            )
            self._signal(record.pid, signal.SIGKILL)
            self._wait_gone(record, 5.0)
            outcome = "killed"
        self.pid_path(name).unlink(missing_ok=True)
        log.info("process stopped", extra={"service": name, "pid": record.pid, "how": outcome})
        return outcome

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # The child leads its own session and group: signal the group so that whatever it
        # spawned (worker processes, a broker's helpers) goes with it.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    @staticmethod
    def _wait_gone(record: PidRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            _reap(record.pid)
            if proc_start_ticks(record.pid) != record.start_ticks:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def tail(self, name: str, lines: int = 20) -> str:
        """The last ``lines`` lines of the service's log (for error messages)."""
        try:
            with self.log_path(name).open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
