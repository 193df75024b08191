"""The demo's curl lines work as printed: run through bash against a real API server."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import uvicorn

from hub.api.factory import create_app
from hub.auth import clients
from hub.demo.clients import curl_line
from hub.settings import Settings
from hub.stack.broker import free_port, port_open
from hub.store.db import get_engine


@pytest.fixture(scope="module")
def api_base(base_settings: Settings, sf_communities: list[str]) -> Iterator[str]:
    port = free_port()
    settings = base_settings.model_copy(update={"api_port": port})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not port_open(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_printed_curl_line_fetches_a_token_and_reads(
    base_settings: Settings, api_base: str
) -> None:
    with get_engine(base_settings).begin() as conn:
        client, secret = clients.create_client(conn, kind="analyst", name="demo-curl-test")
    assert secret is not None
    line = curl_line(api_base, client.client_id, secret, "/v1/communities")
    done = subprocess.run(["bash", "-c", line], capture_output=True, timeout=30, check=True)
    body = orjson.loads(done.stdout)
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == 41
    wrong = curl_line(api_base, client.client_id, secret + "x", "/v1/communities")
    refused = subprocess.run(["bash", "-c", wrong], capture_output=True, timeout=30)
    assert b"FeatureCollection" not in refused.stdout  # a bad secret gets no data
