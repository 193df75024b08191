"""What every benchmark run must leave: its results files, and no database of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg

SERVER = os.environ.get("HUB_TEST_DATABASE_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")


def assert_results_written(results_dir: Path, name: str, result: dict[str, Any]) -> None:
    """``<name>-<time>.json`` and ``<name>-latest.json``, the latter holding this run."""
    files = sorted(p.name for p in results_dir.iterdir())
    assert f"{name}-latest.json" in files and len(files) == 2
    latest = json.loads((results_dir / f"{name}-latest.json").read_text())
    assert latest["run"] == result["run"]


def assert_database_dropped(database: str) -> None:
    admin = SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    assert left is None, f"the bench left its database {database}"
