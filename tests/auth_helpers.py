"""Helpers of the authorization tests: settings without a broker, clients, a probe route, forging.

The probe app is the real app plus two routes guarded by the real dependencies, so the tests
see what a /v1 route will answer once it is behind ``require_scope``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, Key, OKPKey

from hub.access.principal import Principal
from hub.api.factory import create_app
from hub.auth import clients
from hub.auth.deps import PrincipalDep, require_scope
from hub.auth.tokens import REGISTRY
from hub.settings import Settings
from hub.store.communities import import_communities
from hub.store.db import connect, get_engine
from tests.conftest import DATA

HOODS = DATA / "sf_analysis_neighborhoods.geojson"


@pytest.fixture(scope="module")
def auth_settings(database_url: str) -> Settings:
    """The session database, no broker: authorization needs PostgreSQL only."""
    return Settings(database_url=database_url)


@pytest.fixture(scope="module")
def hoods(auth_settings: Settings) -> list[str]:
    """The SF neighbourhoods as communities (re-importing only updates)."""
    with connect(auth_settings) as conn:
        report = import_communities(conn, HOODS, "nhood", "nhood")
    return sorted(report.inserted + report.updated)


def probe_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    def describe(principal: Principal) -> dict[str, Any]:
        return {
            "subject": principal.subject,
            "kind": principal.kind,
            "scopes": sorted(principal.scopes),
            "issuer": principal.issuer,
            "client_id": principal.client_id,
            "community_id": principal.community_id,
            "jurisdiction": principal.jurisdiction_wkb is not None,
            "categories": sorted(principal.categories) if principal.categories else None,
            "person": principal.person,
        }

    @app.get("/test/me")
    def me(principal: PrincipalDep) -> dict[str, Any]:
        return describe(principal)

    @app.get("/test/incidents")
    def incidents(
        principal: Annotated[Principal, Depends(require_scope("incidents:read"))],
    ) -> dict[str, Any]:
        return describe(principal)

    return app


@pytest.fixture(scope="module")
def http(auth_settings: Settings, hoods: list[str]) -> Iterator[TestClient]:
    with TestClient(probe_app(auth_settings)) as client:
        yield client


def register(settings: Settings, **kwargs: Any) -> tuple[clients.Client, str | None]:
    kwargs.setdefault("name", f"test-{uuid.uuid4().hex[:6]}")
    with get_engine(settings).begin() as conn:
        return clients.create_client(conn, **kwargs)


def token_for(http: TestClient, client_id: str, secret: str, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    response = http.post("/oauth/token", data=data, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


LOOPBACK_PEER = ("127.0.0.1", 50000)  # the test client's address: loopback may scrape /metrics


@contextmanager
def signed_in(
    app: FastAPI, settings: Settings, kind: str = "admin", **client_kwargs: Any
) -> Iterator[TestClient]:
    """A test client of ``app`` that sends a real token of a newly registered client."""
    registered, secret = register(settings, kind=kind, **client_kwargs)
    assert secret is not None
    with TestClient(app, client=LOOPBACK_PEER) as http:
        token = token_for(http, registered.client_id, secret)
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
    )


def forge(header: dict[str, Any], claims: dict[str, Any], key: Key | bytes | None) -> str:
    """A compact JWS signed exactly as told: no library check between the attacker and us."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if key is None:
        signature = b""
    elif isinstance(key, bytes):  # an HMAC secret (algorithm confusion)
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    else:
        algorithm = REGISTRY.algorithms["EdDSA" if isinstance(key, OKPKey) else "ES256"]
        signature = algorithm.sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(signature)}"


def new_ec_key() -> ECKey:
    key = ECKey.generate_key("P-256", private=True)
    return ECKey.import_key({**key.as_dict(private=True), "kid": key.thumbprint()})


def claims_for(settings: Settings, cid: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": cid,
        "client_id": cid,
        "scope": "incidents:read risk:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}
