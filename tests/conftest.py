"""Session fixtures: one real broker and one throw-away PostGIS database per test session."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.bus.kafka import wait_for_broker
from hub.settings import Settings
from hub.stack.broker import free_port, start_broker
from hub.store.migrate import drop_database, upgrade
from tests.fusion_helpers import own_stream

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "sf"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_broker(port, tmp_path_factory.mktemp("broker") / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_broker(Settings(kafka_bootstrap=bootstrap))
        yield bootstrap
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    base = os.environ.get(
        "HUB_TEST_DATABASE_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
    )
    url = f"{base}/hub_test_{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=url)
    upgrade(settings)
    try:
        yield url
    finally:
        drop_database(settings)


@pytest.fixture(scope="session")
def base_settings(broker: str, database_url: str) -> Settings:
    # Events only, as the skeleton's tests expect; the tests of the picture turn it on.
    return Settings(kafka_bootstrap=broker, database_url=database_url, fusion_incidents=False)


@pytest.fixture
def hub_settings(base_settings: Settings) -> Settings:
    """Settings with topics and a consumer group of their own, so tests do not share a stream."""
    return own_stream(
        base_settings,
        "fusion",
        topic_partitions=3,
        fusion_session_timeout_ms=6000,
        fusion_max_poll_interval_ms=6000,
    )


@pytest.fixture(scope="session")
def sf_communities(base_settings: Settings) -> list[str]:
    """The 41 real SF neighbourhoods, imported once (re-import only updates)."""
    from hub.store.communities import import_communities
    from hub.store.db import connect

    with connect(base_settings) as conn:
        report = import_communities(
            conn, DATA / "sf_analysis_neighborhoods.geojson", "nhood", "nhood"
        )
    return sorted(report.inserted + report.updated)
