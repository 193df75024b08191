"""What every benchmark prints and keeps: progress bars while it runs, a rich table of figures
against targets, a line describing the machine, and the results as JSON under
``bench/results/``; and the error it raises when it could not run to the end."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.bench.workload import ROOT
from hub.errors import HubError

RESULTS_DIR = ROOT / "bench" / "results"


class BenchFailed(HubError, RuntimeError):
    """The benchmark could not run to the end (the message says where its logs are)."""


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )


@dataclass(frozen=True)
class Target:
    limit: float
    at_least: bool = True  # False: the figure must stay at or below ``limit``
    unit: str = ""
    decimals: int = 0  # as the limit is printed

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.limit if self.at_least else value <= self.limit

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:,.{self.decimals}f}{self.unit}"

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "at_least": self.at_least}


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, and the target it is held against (if any)."""

    phase: str
    figure: str
    value: str
    target: Target | None = None
    measured: float | None = None  # what the target is checked against
    check: bool | None = None  # a pass/fail of its own (e.g. counts add up), no target

    @property
    def passed(self) -> bool | None:
        return self.check if self.target is None else self.target.met(self.measured)


def results_table(title: str, rows: list[Row]) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("phase")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result")
    for row in rows:
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: ""}[row.passed]
        table.add_row(row.phase, row.figure, row.value, str(row.target or ""), verdict)
    return table


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures depend on. The load average tells whether others shared the machine."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kafka_python": _version("kafka-python"),
        "crc32c": importlib.util.find_spec("crc32c") is not None,
        "polars": _version("polars"),
        "psycopg": _version("psycopg"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def machine_line(info: dict[str, Any]) -> str:
    crc = "installed" if info["crc32c"] else "MISSING (kafka-python 4-9x slower)"
    return (
        f"machine: {info['cores']} cores ({info['cpu']}), python {info['python']}, "
        f"kafka-python {info['kafka_python']}, crc32c {crc}, "
        f"load avg at start {info['loadavg_1m_at_start']}"
    )


def utc_stamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(name: str, data: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """``<name>-<UTC timestamp>.json`` and ``<name>-latest.json``; returns the first."""
    directory.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    path = directory / f"{name}-{utc_stamp()}.json"
    path.write_bytes(body)
    (directory / f"{name}-latest.json").write_bytes(body)
    return path


def json_line(data: dict[str, Any]) -> str:
    """The results as ONE line (the last line of stdout with ``--json``)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
