"""One OAuth client per principal kind for the demo, each with a ready ``curl`` line, and what
each one really sees through the running API (the access model, shown rather than told).

Secrets are stored hashed, so an earlier demo's secrets cannot be shown again: every run revokes
the demo clients it finds (named ``demo-*``) and registers new ones.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from shapely.geometry import MultiPolygon, shape
from shapely.ops import unary_union
from sqlalchemy import Connection

from hub.auth import clients
from hub.demo.replay import NEIGHBOURHOODS
from hub.settings import Settings
from hub.stack.probes import api_url
from hub.store.db import get_engine

COMMUNITY = "Mission"
DEPARTMENT_AREA = "Tenderloin"
PREFIX = "demo-"


@dataclass(frozen=True)
class DemoClient:
    kind: str
    label: str
    client_id: str
    client_secret: str
    curl: str


def area(*names: str) -> MultiPolygon:
    """The union of the named SF neighbourhoods' polygons (a department's jurisdiction)."""
    doc = orjson.loads(NEIGHBOURHOODS.read_bytes())
    found = {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise LookupError(f"{', '.join(missing) or 'nothing'} is not in {NEIGHBOURHOODS.name}")
    geom = unary_union([found[n] for n in names])
    return geom if isinstance(geom, MultiPolygon) else MultiPolygon([geom])


SPECS: tuple[tuple[str, str], ...] = (
    ("admin", "admin: everything"),
    ("analyst", "analyst: whole region, no reporters"),
    ("community", f"community {COMMUNITY}: own, and neighbours' within 2 km"),
    ("department", f"department with jurisdiction {DEPARTMENT_AREA}"),
)


def curl_line(base: str, client_id: str, secret: str, path: str) -> str:
    """One shell line: fetch a token, then call ``path`` with it (python3 reads the JSON)."""
    token = (
        f"curl -s -u {shlex.quote(f'{client_id}:{secret}')} -d grant_type=client_credentials "
        f"{base}/oauth/token | python3 -c 'import sys,json; print(json.load(sys.stdin)"
        '["access_token"])\''
    )
    return f'curl -s -H "Authorization: Bearer $({token})" {shlex.quote(base + path)}'


def create_demo_client(
    conn: Connection, base: str, kind: str, name: str, label: str, **extra: Any
) -> DemoClient:
    """Register one secret client named ``demo-<name>`` (``extra``: its community or
    jurisdiction), with a curl line that reads a few events as it."""
    client, secret = clients.create_client(conn, kind=kind, name=PREFIX + name, **extra)
    assert secret is not None  # a secret client, not a key client
    curl = curl_line(base, client.client_id, secret, "/v1/events?limit=3")
    return DemoClient(kind, label, client.client_id, secret, curl)


def register_demo_clients(settings: Settings) -> list[DemoClient]:
    base = api_url(settings)
    made = []
    with get_engine(settings).begin() as conn:
        for old in clients.list_clients(conn):
            if old.name.startswith(PREFIX) and old.active:
                clients.revoke_client(conn, old.client_id)
        for kind, label in SPECS:
            extra: dict[str, Any] = {
                "community": {"community_id": COMMUNITY},
                "department": {"jurisdiction": area(DEPARTMENT_AREA)},
            }.get(kind, {})
            made.append(create_demo_client(conn, base, kind, kind, label, **extra))
    return made


def auth_headers(http: httpx.Client, client: DemoClient) -> dict[str, str]:
    """A fresh access token of ``client`` (client credentials), as request headers."""
    token = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def what_each_sees(settings: Settings, made: list[DemoClient]) -> list[dict[str, Any]]:
    """Through the running API, as each client: events visible, and with a reporter."""
    base = api_url(settings)
    seen = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for c in made:
            events, with_reporter = _count(http, auth_headers(http, c))
            seen.append({"kind": c.kind, "events": events, "with_reporter": with_reporter})
    return seen


def _count(http: httpx.Client, headers: dict[str, str]) -> tuple[int, int]:
    events = with_reporter = 0
    url: str | None = "/v1/events?limit=10000"
    while url is not None:
        page = http.get(url, headers=headers)
        page.raise_for_status()
        body = page.json()
        events += body["numberReturned"]
        with_reporter += sum(
            f["properties"]["source"]["reporter"] is not None for f in body["features"]
        )
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    return events, with_reporter
