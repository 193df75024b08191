"""The audit log on real PostgreSQL: requests become chained rows; `hub audit verify` names edits.

The database is shared by the whole test session, so rows are found by id (after the head at the
start), and the chain is left intact at the end.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from hub.access.principal import DEFAULT_SCOPES, Principal
from hub.api.audit_middleware import install_audit
from hub.api.factory import create_app
from hub.audit import store
from hub.audit.chain import AuditRecord
from hub.cli.main import app as cli
from hub.settings import Settings, get_settings
from hub.store.db import connect
from tests.auth_helpers import LOOPBACK_PEER, parts, signed_in

BBOX = "-122.52,37.70,-122.35,37.83"  # San Francisco


@pytest.fixture(scope="module")
def db(base_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with connect(base_settings, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def app(base_settings: Settings, sf_communities: list[str]) -> FastAPI:
    app = create_app(base_settings)  # the factory installs the audit middleware
    return app


@pytest.fixture(scope="module")
def client(app: FastAPI, base_settings: Settings) -> Iterator[TestClient]:
    with signed_in(app, base_settings, kind="admin") as client:
        yield client


def subject_of(client: TestClient) -> str:
    _, claims = parts(client.headers["Authorization"].removeprefix("Bearer "))
    sub: str = claims["sub"]
    return sub


def last_id(db: psycopg.Connection[Any]) -> int:
    return store.read_head(db).last_id


def rows_after(db: psycopg.Connection[Any], after: int) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM audit_log WHERE id > %s ORDER BY id", (after,)).fetchall()


def run_verify(settings: Settings, *args: str) -> Any:
    get_settings.cache_clear()  # the CLI reads HUB_DATABASE_URL through the cached settings
    try:
        return CliRunner().invoke(
            cli,
            ["audit", "verify", *args],
            env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"},
        )
    finally:
        get_settings.cache_clear()


def tamper(db: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> None:
    # The append-only trigger refuses UPDATE/DELETE; a superuser can switch triggers off, and
    # the chain is what must catch that.
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute(sql, params)


def test_requests_are_chained_and_tampering_is_named(
    client: TestClient, db: psycopg.Connection[Any], base_settings: Settings
) -> None:
    before = last_id(db)
    expected: list[tuple[str, str | None, dict[str, Any], int, int | None]] = []
    for limit in (1, 3, 5):
        r = client.get("/v1/events", params={"bbox": BBOX, "limit": limit})
        assert r.status_code == 200
        query = {"bbox": BBOX, "limit": str(limit)}
        n = r.json()["numberReturned"]
        expected.append(("/v1/events", "/v1/events", {"path": {}, "query": query}, 200, n))
    for _ in range(2):
        r = client.get("/v1/communities")
        assert r.status_code == 200
        n = len(r.json()["features"])
        assert n >= 41
        expected.append(("/v1/communities", "/v1/communities", {"path": {}, "query": {}}, 200, n))
    for _ in range(3):
        assert client.get("/healthz").status_code == 200  # public: not audited
    missing = str(uuid.uuid4())
    assert client.get(f"/v1/events/{missing}").status_code == 404
    expected.append(
        (
            f"/v1/events/{missing}",
            "/v1/events/{event_id}",
            {"path": {"event_id": missing}, "query": {}},
            404,
            None,
        )
    )
    assert client.get("/v1/events", params={"limit": 0}).status_code == 400
    query = {"limit": "0"}
    expected.append(("/v1/events", "/v1/events", {"path": {}, "query": query}, 400, None))
    assert client.get("/v1/nowhere", params={"x": "a\x00b"}).status_code == 404
    query = {"x": "a\ufffdb"}
    expected.append(("/v1/nowhere", None, {"path": {}, "query": query}, 404, None))
    anonymous = client.get("/v1/communities", headers={"Authorization": ""})
    assert anonymous.status_code == 401  # refused, and still on the record
    expected.append(("/v1/communities", "/v1/communities", {"path": {}, "query": {}}, 401, None))

    rows = rows_after(db, before)
    got = [(r["path"], r["endpoint"], r["params"], r["status"], r["rows"]) for r in rows]
    assert got == expected
    assert [r["id"] for r in rows] == list(range(before + 1, before + 1 + len(expected)))
    for r in rows:
        assert r["method"] == "GET"
        known = r["endpoint"] is not None and r["status"] != 401  # a route ran, token checked
        assert r["subject"] == (subject_of(client) if known else None)
        assert r["principal_kind"] == ("admin" if known else None)
        assert r["client_addr"] == LOOPBACK_PEER[0]
        assert r["duration_ms"] >= 0
        assert r["at"].tzinfo is not None

    ok = run_verify(base_settings)
    assert ok.exit_code == 0, ok.output
    assert "audit chain intact" in ok.output

    # an edited row is named
    edited = rows[1]["id"]
    tamper(
        db,
        "UPDATE audit_log SET params = %s WHERE id = %s",
        (Jsonb({"path": {}, "query": {"limit": "999"}}), edited),
    )
    broken = run_verify(base_settings)
    assert broken.exit_code == 1, broken.output
    assert f"BROKEN at row {edited}" in broken.output and "changed" in broken.output
    as_json = run_verify(base_settings, "--json")
    assert as_json.exit_code == 1
    report = orjson.loads(as_json.stdout)
    assert report["intact"] is False
    assert report["first_problem"]["row_id"] == edited
    assert report["first_problem"]["kind"] == "changed"

    tamper(db, "UPDATE audit_log SET params = %s WHERE id = %s", (Jsonb(rows[1]["params"]), edited))
    assert run_verify(base_settings).exit_code == 0

    # a deleted row is named as the gap it leaves
    gone = rows[2]
    tamper(db, "DELETE FROM audit_log WHERE id = %s", (gone["id"],))
    deleted = run_verify(base_settings, "--json")
    assert deleted.exit_code == 1, deleted.output
    first = orjson.loads(deleted.stdout)["first_problem"]
    assert (first["row_id"], first["kind"]) == (gone["id"] + 1, "deleted")
    assert f"row {gone['id']} missing" in first["detail"]
    human = run_verify(base_settings)
    assert f"row {gone['id']} missing" in human.output

    columns = list(gone)
    with db.transaction():
        db.execute(
            f"INSERT INTO audit_log ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})",
            [Jsonb(v) if k == "params" else v for k, v in gone.items()],
        )
    restored = run_verify(base_settings, "--json")
    assert restored.exit_code == 0, restored.output
    assert orjson.loads(restored.stdout)["intact"] is True


def test_principal_and_rows_are_taken_from_request_state(
    base_settings: Settings, db: psycopg.Connection[Any]
) -> None:
    app = FastAPI()
    principal = Principal(
        subject="dept-fire",
        kind="department",
        scopes=DEFAULT_SCOPES["department"],
        issuer="http://127.0.0.1:8000",
        client_id="dept-fire-client",
    )

    @app.get("/v1/whoami/{name}")
    def whoami(request: Request, name: str) -> dict[str, str]:
        request.state.principal = principal  # what the auth dependency does
        request.state.audit_rows = 7
        return {"name": name}

    install_audit(app, base_settings)  # a bare app: the factory is not involved here
    before = last_id(db)
    with TestClient(app) as client:
        assert client.get("/v1/whoami/x", params={"a": ["1", "2"]}).status_code == 200
    (row,) = rows_after(db, before)
    assert row["endpoint"] == "/v1/whoami/{name}"
    assert row["params"] == {"path": {"name": "x"}, "query": {"a": ["1", "2"]}}
    assert (row["subject"], row["principal_kind"], row["client_id"], row["issuer"]) == (
        "dept-fire",
        "department",
        "dept-fire-client",
        "http://127.0.0.1:8000",
    )
    assert row["rows"] == 7
    entries = store.trail(db, subject="dept-fire", since=row["at"])
    assert [e.id for e in entries] == [row["id"]]
    assert entries[0].record.params == row["params"]


def test_failed_append_logs_counts_and_refuses_writes(
    base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(base_settings)

    @app.post("/v1/echo")
    def echo() -> dict[str, bool]:
        return {"done": True}

    def broken(record: AuditRecord, durable: bool = True) -> None:
        raise psycopg.OperationalError("audit store down")

    app.state.audit_writer.append = broken
    with (
        signed_in(app, base_settings) as client,
        caplog.at_level(logging.ERROR, logger="hub.audit"),
    ):
        read = client.get("/v1/events", params={"limit": 1})
        write = client.post("/v1/echo")
        metrics = client.get("/metrics").text
    assert read.status_code == 200  # reads: logged and counted, still answered
    assert write.status_code == 503  # writes: fail closed
    assert write.headers["content-type"] == "application/problem+json"
    assert write.headers["retry-after"] == "5"
    assert 'hub_audit_append_failures_total{access="read"} 1.0' in metrics
    assert 'hub_audit_append_failures_total{access="write"} 1.0' in metrics
    assert sum("audit append failed" in r.getMessage() for r in caplog.records) == 2


def test_concurrent_appends_form_one_chain(
    base_settings: Settings, db: psycopg.Connection[Any]
) -> None:
    before = last_id(db)
    threads, each = 8, 25

    def work(n: int) -> None:
        with connect(base_settings, autocommit=True) as conn:
            for i in range(each):
                record = AuditRecord(
                    at=datetime.now(UTC),
                    method="GET",
                    endpoint="/v1/test",
                    path="/v1/test",
                    params={"path": {}, "query": {"t": str(n), "i": str(i)}},
                    status=200,
                    rows=i,
                    duration_ms=Decimal("0.5"),
                )
                store.append(conn, record)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rows = rows_after(db, before)
    assert [r["id"] for r in rows] == list(range(before + 1, before + 1 + threads * each))
    result = store.verify_log(db)
    assert result.intact, result.problems


def test_unhandled_error_is_audited_as_500(
    base_settings: Settings, db: psycopg.Connection[Any]
) -> None:
    app = create_app(base_settings)

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("bug")

    before = last_id(db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/boom").status_code == 500
    (row,) = rows_after(db, before)
    assert (row["endpoint"], row["status"], row["rows"]) == ("/v1/boom", 500, None)
