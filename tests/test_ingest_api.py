"""``POST /v1/events`` on the real app, a real broker and real PostGIS: what is accepted reaches
the events topic exactly as a connector would send it, what is not is explained per event, and
the request limits answer problem+json."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from geo.tiles import event_key
from hub.api.factory import create_app
from hub.bus import producer
from hub.settings import Settings
from hub.stack.broker import free_port
from hub.store.db import connect
from schemas.event import parse_event
from tests.auth_helpers import bearer, register, token_for
from tests.event_samples import DROP, MINIMAL, SQUARE, edit
from tests.fusion_helpers import consume_all, running_worker, wait_until

COMMUNITY = "Tenderloin"  # holds City Hall, the point of the sample events
NEIGHBOUR = "Mission"
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Callers:
    community: str  # tokens
    admin: str
    analyst: str
    community_client: str  # client id, to find its audit rows


@pytest.fixture(scope="module")
def callers(base_settings: Settings, sf_communities: list[str]) -> Callers:
    """Tokens of three clients, valid for every app on the session database."""
    assert {COMMUNITY, NEIGHBOUR} <= set(sf_communities)
    with TestClient(create_app(base_settings)) as http:

        def new(kind: str, **kwargs: Any) -> tuple[str, str]:
            client, secret = register(base_settings, kind=kind, **kwargs)
            assert secret is not None
            return token_for(http, client.client_id, secret), client.client_id

        community, community_client = new("community", community_id=COMMUNITY)
        return Callers(community, new("admin")[0], new("analyst")[0], community_client)


@contextmanager
def client_of(settings: Settings, **changes: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update=changes))) as http:
        yield http


@pytest.fixture
def http(hub_settings: Settings) -> Iterator[TestClient]:
    with client_of(hub_settings) as client:
        yield client


@pytest.fixture(scope="module")
def no_broker_http(base_settings: Settings) -> Iterator[TestClient]:
    """For answers given before anything is produced."""
    with client_of(base_settings, kafka_bootstrap=f"127.0.0.1:{free_port()}") as client:
        yield client


def event(**changes: Any) -> dict[str, Any]:
    return edit(MINIMAL, event_id=str(uuid.uuid4()), **changes)


def assert_problem(response: Any, status: int, detail_part: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["instance"] == "/v1/events"
    assert detail_part in body["detail"], body["detail"]
    return body


def test_a_valid_batch_is_in_the_log_as_a_connector_would_send_it(
    hub_settings: Settings, callers: Callers
) -> None:
    batch = [
        event(),  # no community_id: the client's own
        event(community_id=COMMUNITY, properties={"note": "[brackets] in {text}"}),
        event(geometry={"type": "Polygon", "coordinates": [SQUARE]}),
    ]
    app = create_app(hub_settings)
    with TestClient(app) as http:
        response = http.post("/v1/events", json=batch, headers=bearer(callers.community))
        assert response.status_code == 202, response.text
        assert app.state.event_producer.connected
    assert not app.state.event_producer.connected  # closed with the app
    assert response.json() == {"accepted": [e["event_id"] for e in batch], "rejected": []}

    records = consume_all(hub_settings, hub_settings.events_topic, expected=3, timeout_s=10)
    by_id = {json.loads(r.value)["event_id"]: r for r in records}
    assert sorted(by_id) == sorted(e["event_id"] for e in batch)
    for sent in batch:
        expected = parse_event(json.dumps({**sent, "community_id": COMMUNITY}))
        record = by_id[sent["event_id"]]
        assert record.value == expected.to_json()
        assert record.key == event_key(expected, hub_settings.tile_zoom)

    with connect(hub_settings) as conn:
        audited = conn.execute(
            "SELECT status, rows FROM audit_log WHERE client_id = %s AND method = 'POST' "
            "ORDER BY id DESC LIMIT 1",
            (callers.community_client,),
        ).fetchone()
    assert audited == (202, 3)


def test_a_mixed_batch_answers_207_and_produces_only_the_good_events(
    hub_settings: Settings, http: TestClient, callers: Callers
) -> None:
    invalid = event(kind=DROP)
    foreign = event(community_id=NEIGHBOUR)
    good = event()
    response = http.post(
        "/v1/events", json=[invalid, foreign, good], headers=bearer(callers.community)
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == [good["event_id"]]
    assert body["rejected"] == [
        {
            "index": 0,
            "event_id": invalid["event_id"],
            "status": 400,
            "detail": "/0/kind: Field required",
            "errors": [{"pointer": "/0/kind", "detail": "Field required"}],
        },
        {
            "index": 1,
            "event_id": foreign["event_id"],
            "status": 403,
            "detail": f"this client writes for community {COMMUNITY!r} only, not {NEIGHBOUR!r}",
            "errors": [
                {
                    "pointer": "/1/community_id",
                    "detail": f"this client writes for community {COMMUNITY!r} only, "
                    f"not {NEIGHBOUR!r}",
                }
            ],
        },
    ]
    records = consume_all(hub_settings, hub_settings.events_topic, expected=1, timeout_s=10)
    assert [json.loads(r.value)["event_id"] for r in records] == [good["event_id"]]


def test_an_admin_writes_for_any_community(http: TestClient, callers: Callers) -> None:
    batch = [event(community_id=NEIGHBOUR), event()]
    response = http.post("/v1/events", json=batch, headers=bearer(callers.admin))
    assert response.status_code == 202, response.text


def test_nothing_valid_is_a_400_with_the_errors_per_event(
    no_broker_http: TestClient, callers: Callers
) -> None:
    batch = [
        event(geometry={"type": "Point", "coordinates": [200.0, 37.7]}),
        "not an event",
        event(observed_at="2018-12-01 08:00:00"),
        event(community_id=NEIGHBOUR),
        # Valid by the contract, but shapely (the key, fusion) cannot take the mix: refused.
        event(
            geometry={"type": "LineString", "coordinates": [[-122.42, 37.77], [-122.41, 37.78, 5]]}
        ),
        # Valid JSON and contract, but PostgreSQL text cannot hold NUL: fusion would refuse it.
        event(properties={"note": "a\x00b"}),
    ]
    response = no_broker_http.post("/v1/events", json=batch, headers=bearer(callers.community))
    body = assert_problem(response, 400, "none of the 6 events was accepted")
    errors = body["errors"]
    assert [e["index"] for e in errors] == [0, 1, 2, 3, 4, 5]
    assert [e["status"] for e in errors] == [400, 400, 400, 403, 400, 400]
    assert "NUL" in errors[5]["detail"]
    assert errors[4]["errors"][0]["pointer"] == "/4/geometry/coordinates"
    assert errors[0]["errors"] == [  # as [lon, lat] and as [lon, lat, alt]: said once
        {
            "pointer": "/0/geometry/coordinates/0",
            "detail": "Input should be less than or equal to 180",
        },
        {"pointer": "/0/geometry/coordinates/2", "detail": "Field required"},
    ]
    assert errors[1]["event_id"] is None and errors[1]["errors"][0]["pointer"] == "/1"
    assert errors[2]["errors"][0]["pointer"] == "/2/observed_at"


def test_nothing_allowed_is_a_403(no_broker_http: TestClient, callers: Callers) -> None:
    batch = [event(community_id=NEIGHBOUR), event(community_id="Nowhere")]
    response = no_broker_http.post("/v1/events", json=batch, headers=bearer(callers.community))
    body = assert_problem(response, 403, "this client may write none of the 2 events")
    assert [e["status"] for e in body["errors"]] == [403, 403]


def test_verification_events_are_refused_even_for_an_admin(
    no_broker_http: TestClient, callers: Callers
) -> None:
    # A decision needs its route (who may rule is checked there); posted as an event it would
    # let any community refute any incident under any name.
    forged = event(kind="verification", properties={"decision": "refuted", "incident_id": "x"})
    for caller in (callers.community, callers.admin):
        response = no_broker_http.post("/v1/events", json=[forged], headers=bearer(caller))
        body = assert_problem(response, 403, "POST /v1/incidents/{id}/verification")
        assert body["errors"][0]["errors"][0]["pointer"] == "/0/kind"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"events": []}', "must be a JSON array of events"),
        (b'[{"event_id": ', "not valid JSON"),
        (b"[]", "the batch is empty"),
        (b"[" * 33 + b"]" * 33, "nested deeper than 32"),
        (b"[" * 200_000, "nested deeper than 32"),  # no RecursionError, no 500
        (json.dumps([edit(MINIMAL, properties=json.loads('{"a":' * 40 + "1" + "}" * 40))]), "32"),
    ],
    ids=["object", "broken", "empty", "deep", "unclosed-tower", "deep-properties"],
)
def test_bad_bodies_are_400(
    no_broker_http: TestClient, callers: Callers, content: bytes | str, detail: str
) -> None:
    response = no_broker_http.post(
        "/v1/events",
        content=content,
        headers={**bearer(callers.community), "Content-Type": "application/json"},
    )
    assert_problem(response, 400, detail)


def test_a_body_beyond_the_size_limit_is_413(base_settings: Settings, callers: Callers) -> None:
    big = json.dumps([event(properties={"pad": "x" * 2000})])
    with client_of(base_settings, api_max_body_bytes=1024) as http:
        declared = http.post("/v1/events", content=big, headers=bearer(callers.community))
        assert declared.request.headers["content-length"] == str(len(big))
        assert_problem(declared, 413, "larger than 1024 bytes")
        anonymous = http.post("/v1/events", content=big)  # refused before anything else
        assert_problem(anonymous, 413, "larger than 1024 bytes")

        def chunks() -> Iterator[bytes]:
            for n in range(0, len(big), 300):
                yield big[n : n + 300].encode()

        chunked = http.post("/v1/events", content=chunks(), headers=bearer(callers.community))
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in chunked.request.headers
        assert_problem(chunked, 413, "larger than 1024 bytes")


def test_a_batch_beyond_the_batch_limit_is_413(base_settings: Settings, callers: Callers) -> None:
    with client_of(base_settings, api_max_batch=2) as http:
        response = http.post(
            "/v1/events", json=[event(), event(), event()], headers=bearer(callers.community)
        )
    assert_problem(response, 413, "3 events in one request; at most 2")


def test_a_token_with_events_write_is_required(
    no_broker_http: TestClient, callers: Callers
) -> None:
    anonymous = no_broker_http.post("/v1/events", json=[event()])
    assert_problem(anonymous, 401, "bearer token")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    analyst = no_broker_http.post("/v1/events", json=[event()], headers=bearer(callers.analyst))
    assert_problem(analyst, 403, "events:write")


def test_an_unreachable_broker_is_503_with_retry_after(
    base_settings: Settings, callers: Callers
) -> None:
    settings = base_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    app = create_app(settings)
    app.state.event_producer = producer.EventProducer(settings, timeout_s=1.0, cooldown_s=30.0)
    with TestClient(app) as http:
        start = time.monotonic()
        first = http.post("/v1/events", json=[event()], headers=bearer(callers.community))
        assert time.monotonic() - start < 5
        assert_problem(first, 503, "nothing was accepted")
        assert int(first.headers["retry-after"]) >= 1
        start = time.monotonic()
        second = http.post("/v1/events", json=[event()], headers=bearer(callers.community))
        assert time.monotonic() - start < 0.9  # within the cool-down: no new connection attempt
        assert_problem(second, 503, "resending the same event ids is safe")
        assert 1 <= int(second.headers["retry-after"]) <= 30


def test_the_client_rate_limit_answers_429(hub_settings: Settings, callers: Callers) -> None:
    with client_of(hub_settings, rate_limit_burst=1, rate_limit_per_s=0.01) as http:
        first = http.post("/v1/events", json=[event()], headers=bearer(callers.admin))
        assert first.status_code == 202, first.text
        second = http.post("/v1/events", json=[event()], headers=bearer(callers.admin))
    assert_problem(second, 429, "rate limit")
    assert second.headers["retry-after"] == "100"


def test_posted_events_are_stored_once_by_fusion(
    hub_settings: Settings, http: TestClient, callers: Callers
) -> None:
    batch = [event(), event(geometry={"type": "Polygon", "coordinates": [SQUARE]})]
    ids = [e["event_id"] for e in batch]
    for _ in range(2):  # a retry of the same batch is safe: event ids are the idempotency key
        response = http.post("/v1/events", json=batch, headers=bearer(callers.community))
        assert response.status_code == 202, response.text

    def stored() -> list[tuple[str, str]]:
        with connect(hub_settings) as conn:
            rows = conn.execute(
                "SELECT event_id::text, community_id FROM event WHERE event_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchall()
        return sorted(rows)

    with running_worker(hub_settings):
        wait_until(lambda: len(stored()) == 2, 30, "the posted events stored")
    assert stored() == sorted((i, COMMUNITY) for i in ids)


def test_the_document_describes_the_body_and_every_answer() -> None:
    operation = create_app(Settings()).openapi()["paths"]["/v1/events"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    assert {"event_id", "geometry", "observed_at"} <= set(schema["items"]["required"])
    assert "$ref" not in json.dumps(schema), "the event schema must be self-contained"
    assert {"202", "207", "400", "401", "403", "413", "429", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"OAuth2": ["events:write"]}]
