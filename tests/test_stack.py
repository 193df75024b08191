"""The local stack on real processes: broker, migrations, fusion worker, API; and process.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli.main import app
from hub.settings import Settings
from hub.stack import local
from hub.stack.broker import free_port, port_open
from hub.stack.process import PidRecord, Processes, proc_start_ticks

pytestmark = pytest.mark.slow


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# --- process.py -----------------------------------------------------------------------------


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path / "state")
    try:
        yield p
    finally:
        for pid_file in p.run_dir.glob("*.pid"):
            p.stop(pid_file.stem, timeout=1)


def test_start_writes_pid_and_log_and_stop_removes_them(procs: Processes) -> None:
    record = procs.start("sleeper", ["sh", "-c", "echo hello; exec sleep 30"])
    assert procs.is_running("sleeper")
    saved = json.loads(procs.pid_path("sleeper").read_text())
    assert saved["pid"] == record.pid
    assert saved["start_ticks"] == proc_start_ticks(record.pid)
    _wait(lambda: "hello" in procs.tail("sleeper"))
    assert os.getpgid(record.pid) == record.pid  # its own session and group
    assert procs.stop("sleeper", timeout=5) == "stopped"
    assert not procs.pid_path("sleeper").exists()
    assert proc_start_ticks(record.pid) is None
    assert procs.stop("sleeper") == "not running"  # a second stop is harmless


def test_stale_pid_file_of_dead_process_is_cleaned(procs: Processes) -> None:
    record = procs.start("short", [sys.executable, "-c", "pass"])
    _wait(lambda: not procs.is_running("short"))
    assert not procs.pid_path("short").exists()
    assert proc_start_ticks(record.pid) is None


def test_pid_file_with_other_start_time_is_not_ours(procs: Processes) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        ticks = proc_start_ticks(stranger.pid)
        assert ticks is not None
        procs.run_dir.mkdir(parents=True)
        fake = PidRecord(stranger.pid, ticks + 1, ["sleep", "30"], time.time())
        procs._write("stranger", fake)
        assert not procs.is_running("stranger")
        assert not procs.pid_path("stranger").exists()
        procs._write("stranger", fake)
        assert procs.stop("stranger", timeout=1) == "not running"
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_kills_what_ignores_sigterm(procs: Processes) -> None:
    # An ignored signal stays ignored across exec, so the whole group shrugs off SIGTERM.
    procs.start("stubborn", ["sh", "-c", "trap '' TERM; echo armed; sleep 30"])
    _wait(lambda: "armed" in procs.tail("stubborn"))
    assert procs.stop("stubborn", timeout=0.5) == "killed"
    assert not procs.is_running("stubborn")


def test_unreadable_pid_file_is_removed(procs: Processes) -> None:
    procs.run_dir.mkdir(parents=True)
    procs.pid_path("junk").write_text("not json")
    assert not procs.is_running("junk")
    assert not procs.pid_path("junk").exists()


# --- settings, probes and failure reporting (no stack needed) -------------------------------


def test_child_env_carries_the_settings_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_PUBLIC_URL", "http://elsewhere")
    monkeypatch.setenv("HUB_API_PORT", "1")
    settings = Settings(state_dir=Path("rel"), api_port=8123, public_url=None)
    env = local.child_env(settings)
    assert env["HUB_API_PORT"] == "8123"
    assert env["HUB_STATE_DIR"] == str(Path("rel").resolve())
    assert "HUB_PUBLIC_URL" not in env
    assert env["PATH"] == os.environ["PATH"]
    monkeypatch.delenv("HUB_PUBLIC_URL")
    monkeypatch.delenv("HUB_API_PORT")
    for key, value in env.items():
        if key.startswith("HUB_"):
            monkeypatch.setenv(key, value)
    assert Settings() == settings.model_copy(update={"state_dir": Path("rel").resolve()})


def test_broker_is_local() -> None:
    assert local.broker_is_local(Settings(kafka_bootstrap="127.0.0.1:9092", broker_port=9092))
    assert local.broker_is_local(Settings(kafka_bootstrap="localhost:9300", broker_port=9300))
    assert not local.broker_is_local(Settings(kafka_bootstrap="kafka:9092", broker_port=9092))
    assert not local.broker_is_local(Settings(kafka_bootstrap="127.0.0.1:9093", broker_port=9092))


def test_running_broker_is_adopted_and_left_alone(broker: str, tmp_path: Path) -> None:
    port = int(broker.rsplit(":", 1)[1])
    settings = Settings(kafka_bootstrap=broker, broker_port=port, state_dir=tmp_path)
    procs = local.processes(settings)
    assert local._ensure_broker(settings, procs, local._quiet) == "adopted"
    assert not procs.pid_path("broker").exists()
    assert local.down(settings) == {
        "api": "not running",
        "notify": "not running",
        "fusion": "not running",
        "broker": "not running",
    }
    assert local.broker_answers(settings)


def test_external_kafka_is_not_started(broker: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=broker, broker_port=free_port(), state_dir=tmp_path)
    assert local._ensure_broker(settings, local.processes(settings), local._quiet) == "external"
    assert not port_open(settings.broker_port)


def test_foreign_listener_on_a_service_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        settings = Settings(api_port=s.getsockname()[1], state_dir=tmp_path)
        with pytest.raises(local.StackError, match="in use by a process hub did not start") as e:
            local._ensure(local.API, settings, local.processes(settings), local._quiet)
    assert e.value.service == "api"


def test_early_death_names_the_service_and_shows_its_log(tmp_path: Path) -> None:
    crashing = replace(
        local.FUSION,
        command=lambda s: [
            sys.executable,
            "-c",
            "import sys; print('boom: bad config'); sys.exit(2)",
        ],
        ready=lambda s: False,
    )
    settings = Settings(fusion_metrics_port=free_port(), state_dir=tmp_path)
    with pytest.raises(local.StackError, match="exited during start-up") as e:
        local._ensure(crashing, settings, local.processes(settings), local._quiet)
    assert e.value.service == "fusion"
    assert "boom: bad config" in e.value.log_tail


def test_commands_have_help() -> None:
    runner = CliRunner()
    for command in ("up", "down", "status"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


# --- the real stack -------------------------------------------------------------------------


@pytest.fixture
def stack_settings(tmp_path: Path, database_url: str) -> Iterator[Settings]:
    tag = uuid.uuid4().hex[:8]
    broker_port = free_port()
    settings = Settings(
        database_url=database_url,
        state_dir=tmp_path / "hub",
        broker_port=broker_port,
        kafka_bootstrap=f"127.0.0.1:{broker_port}",
        api_port=free_port(),
        fusion_metrics_port=free_port(),
        notify_metrics_port=free_port(),
        events_topic=f"stack.events.{tag}",
        dlq_topic=f"stack.dlq.{tag}",
        consumer_group=f"stack.fusion.{tag}",
        topic_partitions=2,
    )
    try:
        yield settings
    finally:
        local.down(settings, timeout_s=5)  # never leak a process, whatever the test did


def _pids(settings: Settings) -> dict[str, int]:
    procs = local.processes(settings)
    return {n: r.pid for n in local.MANAGED if (r := procs.record(n)) is not None}


def _hub(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``hub`` CLI as a user runs it, configured through HUB_* like the children are."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=local.child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_all_ready(settings: Settings) -> None:
    assert local.http_ok(f"{local.api_url(settings)}/readyz")
    assert local.http_ok(f"http://127.0.0.1:{settings.fusion_metrics_port}/metrics")
    assert local.http_ok(f"http://127.0.0.1:{settings.notify_metrics_port}/metrics")
    assert local.broker_answers(settings)
    assert local.all_ready(local.status(settings))


def test_up_restart_dead_worker_and_down(stack_settings: Settings) -> None:
    settings = stack_settings
    report = local.up(settings)
    assert report.outcomes == {
        "broker": "started",
        "migrations": "migrated",
        "fusion": "started",
        "notify": "started",
        "api": "started",
    }
    assert report.started == ("broker", "fusion", "notify", "api")
    _assert_all_ready(settings)
    pids = _pids(settings)
    assert set(pids) == {"broker", "fusion", "notify", "api"}

    again = local.up(settings)  # a no-op: nothing restarted
    assert again.started == ()
    assert _pids(settings) == pids

    os.kill(pids["fusion"], signal.SIGKILL)
    _wait(lambda: not local.processes(settings).is_running("fusion"))
    result = _hub(settings, "status", "--json")
    assert result.returncode == 3, result.stderr
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["ready"] is False
    assert body["services"]["fusion"]["state"] == "stopped"
    assert body["services"]["api"]["ready"] is True

    result = _hub(settings, "up")  # through the CLI: restarts the worker only
    assert result.returncode == 0, result.stdout + result.stderr
    after = _pids(settings)
    assert after["broker"] == pids["broker"] and after["api"] == pids["api"]
    assert after["notify"] == pids["notify"]
    assert after["fusion"] != pids["fusion"]
    assert _hub(settings, "status").returncode == 0
    _assert_all_ready(settings)

    assert local.down(settings) == {
        "api": "stopped",
        "notify": "stopped",
        "fusion": "stopped",
        "broker": "stopped",
    }
    for pid in after.values():
        assert proc_start_ticks(pid) is None
    ports = (settings.api_port, settings.fusion_metrics_port, settings.notify_metrics_port)
    for port in (settings.broker_port, *ports):
        assert not port_open(port)
    assert _pids(settings) == {}
    second = _hub(settings, "down")
    assert second.returncode == 0, second.stderr
    assert _hub(settings, "status").returncode == 3
