"""Webhooks through the real pipeline: reports produced to the broker, fused by a real fusion
worker (the change log), delivered by a real ``hub notify run`` process to receivers of the
test's own (HTTP servers on 127.0.0.1, allowed through ``HUB_WEBHOOK_ALLOWED_HOSTS``), the
subscriptions made and read through the API.

Places are real San Francisco neighbourhoods (data/sf), as in tests/test_stream.py: a fire in
the Mission; Lakeshore lies > 2.7 km from every community but Sunset/Parkside.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.access import targets
from hub.api.factory import create_app
from hub.notify.send import send
from hub.settings import Settings
from hub.stack.broker import free_port
from hub.stack.local import child_env, http_ok
from hub.store.db import connect
from tests.auth_helpers import LOOPBACK_PEER, register, token_for
from tests.fusion_helpers import GENEROUS_LIMITS, own_stream
from tests.test_incidents import report, run
from tests.test_stream import POLYS, _inside

MISSION, LAKESHORE = "Mission", "Lakeshore"
MAX_FAILURES = 4


# --- a receiver of the test's own ----------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def data(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; per path, the statuses to answer
    first (then 200), or seconds to hang before answering."""

    received: list[Received] = field(default_factory=list)
    fail_first: dict[str, list[int]] = field(default_factory=dict)
    hang_s: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                pending = receiver.fail_first.get(self.path, [])
                status = pending.pop(0) if pending else 200
            time.sleep(receiver.hang_s.get(self.path, 0))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    server.daemon_threads = True
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


# --- the hub: API (in-process), notifier (a process of its own) ------------------------------


@dataclass
class Hub:
    settings: Settings
    http: TestClient
    tokens: dict[str, str]

    def subscribe(self, who: str, url: str, **body: Any) -> dict[str, Any]:
        answer = self.http.post(
            "/v1/subscriptions", json={"url": url, **body}, headers=self.auth(who)
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def subscription(self, who: str, sub_id: str) -> dict[str, Any]:
        listed = self.http.get("/v1/subscriptions", headers=self.auth(who)).json()
        found: dict[str, Any] = next(s for s in listed["subscriptions"] if s["id"] == sub_id)
        return found

    def deliveries(self, who: str, sub_id: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=self.auth(who))
        assert answer.status_code == 200, answer.text
        return list(reversed(answer.json()["deliveries"]))  # oldest first


@pytest.fixture(scope="module")
def hub(
    base_settings: Settings, sf_communities: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    settings = own_stream(base_settings, "hooks", **GENEROUS_LIMITS).model_copy(
        update={
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_backoff_s": 0.1,
            "webhook_backoff_max_s": 0.4,
            "webhook_max_failures": MAX_FAILURES,
            "webhook_timeout_s": 1.0,
            "webhook_poll_s": 1.0,
            "notify_metrics_port": free_port(),
        }
    )
    specs: dict[str, dict[str, Any]] = {
        "admin": {"kind": "admin"},
        "department": {"kind": "department", "jurisdiction": _multi(POLYS["Tenderloin"])},
        "mission": {"kind": "community", "community_id": MISSION},
        "far": {"kind": "community", "community_id": LAKESHORE},
    }
    log = tmp_path_factory.mktemp("notify") / "notify.log"
    with TestClient(create_app(settings), client=LOOPBACK_PEER) as http:
        tokens = {}
        for name, spec in specs.items():
            registered, secret = register(settings, **spec)
            assert secret is not None
            tokens[name] = token_for(http, registered.client_id, secret)
        notifier = _start_notifier(settings, log)
        try:
            yield Hub(settings, http, tokens)
        finally:
            notifier.terminate()
            notifier.wait(20)


def _multi(polygon: Any) -> MultiPolygon:
    return polygon if isinstance(polygon, MultiPolygon) else MultiPolygon([polygon])


def _start_notifier(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "notify", "run"],
            env=child_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    metrics = f"http://127.0.0.1:{settings.notify_metrics_port}/metrics"
    deadline = time.monotonic() + 30
    while not http_ok(metrics):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the notifier did not start"
        time.sleep(0.1)
    return process


def _incident_of(settings: Settings, event_id: str) -> str:
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT incident_id::text FROM incident_report WHERE event_id = %s", (event_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def _until(what: str, found: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.05)
    return value


# --- the tests ----------------------------------------------------------------------------------


def test_a_report_reaches_the_webhook_signed_and_only_within_reach(
    hub: Hub, receiver: Receiver
) -> None:
    subs = {
        who: hub.subscribe(who, receiver.url(f"/reach/{who}"), types=["incident"])
        for who in ("mission", "far", "department", "admin")
    }
    assert all(s["secret"].startswith("whsec_") for s in subs.values())
    fire = report(_inside(MISSION), MISSION, minutes=2000, reporter="r-mission-hook")
    run(hub.settings, [fire])
    incident = _incident_of(hub.settings, fire["event_id"])

    def of_incident(who: str) -> list[Received]:
        return [r for r in receiver.at(f"/reach/{who}") if r.data["id"] == incident]

    for who in ("mission", "admin"):
        got = _until(f"{who} receives the fire", partial(of_incident, who))[0]
        data = Webhook(subs[who]["secret"]).verify(got.body, got.headers)
        assert set(data) == {"seq", "type", "change", "id", "at", "object"}
        assert (data["type"], data["change"], data["object"]["id"]) == (
            "incident",
            "created",
            incident,
        )
        assert got.headers["webhook-id"] == f"msg_{subs[who]['id'].replace('-', '')}_{data['seq']}"
        with pytest.raises(WebhookVerificationError):  # another subscription's secret
            Webhook(subs["far"]["secret"]).verify(got.body, got.headers)
        with pytest.raises(WebhookVerificationError):  # a changed body
            Webhook(subs[who]["secret"]).verify(got.body.replace(b"fire", b"f1re"), got.headers)
    seq = of_incident("mission")[0].data["seq"]
    with connect(hub.settings) as conn:
        logged = conn.execute(
            "SELECT type, change, object_id FROM picture_change WHERE seq = %s", (seq,)
        ).fetchone()
    assert logged == ("incident", "created", incident)
    # The object is the list endpoint's Feature: no reporter, even for the admin.
    assert b"r-mission-hook" not in of_incident("admin")[0].body
    # A far community, and a department elsewhere: the notifier walked past the change and
    # delivered nothing of it.
    for who in ("far", "department"):
        _until(
            f"{who}'s cursor past it",
            partial(lambda w: hub.subscription(w, subs[w]["id"])["cursor"] >= seq, who),
        )
        assert of_incident(who) == []
        assert hub.deliveries(who, subs[who]["id"]) == []
    assert [d["outcome"] for d in hub.deliveries("mission", subs["mission"]["id"])] == ["delivered"]


def test_failures_retry_with_the_same_webhook_id_then_disable(hub: Hub, receiver: Receiver) -> None:
    receiver.fail_first["/flaky"] = [500, 503, 500]
    receiver.fail_first["/broken"] = [500] * 50
    flaky = hub.subscribe("admin", receiver.url("/flaky"), types=["incident"])
    broken = hub.subscribe("admin", receiver.url("/broken"), types=["incident"])
    fire = report(_inside(MISSION), MISSION, minutes=2100, reporter="r-flaky")
    run(hub.settings, [fire])
    incident = _incident_of(hub.settings, fire["event_id"])

    first = _until(
        "a delivery after 3 failures",
        lambda: [r for r in receiver.at("/flaky") if r.data["id"] == incident][:4][3:],
    )[0]
    tries = [r for r in receiver.at("/flaky") if r.data["id"] == incident][:4]
    assert len({r.headers["webhook-id"] for r in tries}) == 1  # the same message, 4 times
    for attempt in tries:
        assert Webhook(flaky["secret"]).verify(attempt.body, attempt.headers)["id"] == incident
    assert first.body == tries[0].body
    log = hub.deliveries("admin", flaky["id"])
    ours = [d for d in log if d["webhook_id"] == first.headers["webhook-id"]]
    assert [(d["attempt"], d["outcome"], d["status_code"]) for d in ours] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "failed", 500),
        (4, "delivered", 200),
    ]
    assert hub.subscription("admin", flaky["id"])["active"] is True

    gone = _until(
        "the broken subscription disabled",
        lambda: not (s := hub.subscription("admin", broken["id"]))["active"] and s,
    )
    assert gone["disabled_reason"] == f"{MAX_FAILURES} consecutive failed deliveries"
    attempts = hub.deliveries("admin", broken["id"])
    assert [d["attempt"] for d in attempts] == list(range(1, MAX_FAILURES + 1))
    assert {d["outcome"] for d in attempts} == {"failed"}
    assert len({d["webhook_id"] for d in attempts}) == 1
    count = len(receiver.at("/broken"))
    time.sleep(1.5)
    assert len(receiver.at("/broken")) == count  # disabled: nothing more sent


def test_a_hanging_receiver_does_not_hold_back_another(hub: Hub, receiver: Receiver) -> None:
    receiver.hang_s["/hang"] = 5.0  # beyond HUB_WEBHOOK_TIMEOUT_S (1 s)
    hanging = hub.subscribe("admin", receiver.url("/hang"), types=["incident"])
    hub.subscribe("admin", receiver.url("/prompt"), types=["incident"])
    fire = report(_inside(MISSION), MISSION, minutes=2200, reporter="r-hang")
    run(hub.settings, [fire])
    incident = _incident_of(hub.settings, fire["event_id"])
    hung = _until("the hanging receiver called", lambda: receiver.at("/hang"))[0]
    started = time.monotonic()
    _until("the prompt receiver served", lambda: receiver.at("/prompt"), timeout_s=10)
    assert time.monotonic() - started < 2.0  # not after the other's timeout and retries
    assert hung.data["id"] == incident
    log = _until("a timed-out attempt logged", lambda: hub.deliveries("admin", hanging["id"]))
    assert log[0]["outcome"] == "failed" and "no answer within" in log[0]["error"]
    assert log[0]["duration_ms"] < 2500
    assert (
        hub.http.delete(f"/v1/subscriptions/{hanging['id']}", headers=hub.auth("admin")).status_code
        == 204
    )


def test_subscriptions_are_the_callers_own(hub: Hub, receiver: Receiver) -> None:
    mine = hub.subscribe("mission", receiver.url("/own"), filters={"verification": "verified"})
    assert mine["types"] == ["incident", "warning", "risk", "resource"]
    assert mine["filters"]["verification"] == ["verified"] and "secret" in mine
    listed = hub.http.get("/v1/subscriptions", headers=hub.auth("mission")).json()
    assert mine["id"] in {s["id"] for s in listed["subscriptions"]}
    assert all("secret" not in s for s in listed["subscriptions"])
    others = hub.http.get("/v1/subscriptions", headers=hub.auth("far")).json()["subscriptions"]
    assert mine["id"] not in {s["id"] for s in others}
    path = f"/v1/subscriptions/{mine['id']}"
    assert hub.http.get(f"{path}/deliveries", headers=hub.auth("far")).status_code == 404
    assert hub.http.delete(path, headers=hub.auth("far")).status_code == 404
    # The API role can write a secret but never read one, whoever asks.
    with (
        connect(hub.settings, api_purpose="authenticate") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT secret FROM webhook_secret").fetchall()
    assert hub.http.delete(path, headers=hub.auth("mission")).status_code == 204
    assert hub.http.delete(path, headers=hub.auth("mission")).status_code == 404
    bad = hub.http.post(
        "/v1/subscriptions",
        json={"url": receiver.url("/x"), "filters": {"verification": "maybe"}},
        headers=hub.auth("mission"),
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.1.2.3/hook",
        "http://localhost/hook",
        "ftp://example.org/hook",
        "http://user:pw@example.org/hook",
        "http://[::1/hook",
        "http://example.org:99999/hook",
        "http://" + "a" * 300 + ".org/hook",  # not a valid DNS name
        "http://exa\x00mple.org/hook",
    ],
)
def test_private_targets_are_refused_unless_allowed(hub: Hub, url: str) -> None:
    strict = hub.settings.model_copy(update={"webhook_allowed_hosts": []})
    with TestClient(create_app(strict), client=LOOPBACK_PEER) as http:
        answer = http.post("/v1/subscriptions", json={"url": url}, headers=hub.auth("mission"))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "url:" in answer.json()["detail"]


def test_allowed_hosts_and_the_check_at_delivery_time(receiver: Receiver) -> None:
    loopback = "http://127.0.0.1/hook"
    assert targets.check(loopback, ["127.0.0.1"]).addresses == ("127.0.0.1",)
    assert targets.check(loopback, ["127.0.0.0/8"]).host == "127.0.0.1"
    assert targets.check("http://169.254.169.254/", ["169.254.169.254"]).port == 80
    # A public name that starts resolving to a private address is refused from then on.
    public = targets.check("https://hooks.example.org/x", [], lambda h, p: ["93.184.215.14"])
    assert public.port == 443
    with pytest.raises(targets.TargetRefused, match=r"10\.0\.0\.7"):
        targets.check("https://hooks.example.org/x", [], lambda h, p: ["93.184.215.14", "10.0.0.7"])
    assert targets.check(
        "https://hooks.example.org/x", ["hooks.example.org"], lambda h, p: ["10.0.0.7"]
    )
    # The notifier checks again before it sends: an allowance withdrawn, nothing leaves.
    before = len(receiver.received)

    async def attempt() -> Any:
        async with httpx.AsyncClient() as client:
            return await send(
                client, receiver.url("/late"), "whsec_" + "A" * 32, "msg_1", b"{}", [], 1.0
            )

    refused = asyncio.run(attempt())
    assert refused.outcome == "refused" and "HUB_WEBHOOK_ALLOWED_HOSTS" in (refused.error or "")
    assert len(receiver.received) == before
