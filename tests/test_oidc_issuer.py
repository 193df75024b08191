"""People's tokens from a trusted OpenID Connect issuer that this test runs itself.

The issuer is a key pair and a JWKS served on a loopback port by an ``http.server`` thread (what
the hub needs of Keycloak: its keys at a URL). A person's group maps to a principal; the
same checks as for the hub's own tokens apply.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey

from hub.auth.tokens import InvalidToken, TokenVerifier
from hub.settings import IssuerRole, Settings, TrustedIssuer
from tests.auth_helpers import bearer, forge, new_ec_key, probe_app

AREA = {
    "type": "Polygon",
    "coordinates": [
        [[-122.43, 37.74], [-122.40, 37.74], [-122.40, 37.77], [-122.43, 37.77], [-122.43, 37.74]]
    ],
}


class Issuer:
    """A minimal OIDC provider: keys, a JWKS endpoint, and tokens for people."""

    def __init__(self) -> None:
        self.keys: list[ECKey] = [new_ec_key()]
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/realms/city/protocol/openid-connect/certs":
                    self.send_error(404)
                    return
                issuer.fetches += 1
                body = json.dumps(
                    {"keys": [k.as_dict(private=False) | {"use": "sig"} for k in issuer.keys]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/realms/city"
        self.jwks_url = f"{self.url}/protocol/openid-connect/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, groups: list[str] | None, key: ECKey | None = None, **claims: Any) -> str:
        key = key or self.keys[-1]
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": "hub",
            "sub": f"person-{uuid.uuid4().hex[:8]}",
            "azp": "city-portal",
            "iat": now,
            "exp": now + 300,
            "preferred_username": "l.chen",
            "groups": groups,
        } | claims
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid}
        return forge(header, payload, key)


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


@pytest.fixture(scope="module")
def settings(
    issuer: Issuer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    area = tmp_path_factory.mktemp("oidc") / "fire-district.geojson"
    area.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": AREA}))
    mapping = {
        "/fire-department": IssuerRole(kind="department", jurisdiction=area, categories=["Fire"]),
        "/mission-committee": IssuerRole(kind="community", community_id="Mission"),
        "/analysts": IssuerRole(kind="analyst", scopes=["risk:read"]),
    }
    trusted = TrustedIssuer(
        issuer=issuer.url, jwks_url=issuer.jwks_url, audience="hub", mapping=mapping
    )
    return Settings(database_url=database_url, trusted_issuers=[trusted])


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[TestClient]:
    with TestClient(probe_app(settings)) as client:
        yield client


def test_a_persons_group_maps_to_a_department(http: TestClient, issuer: Issuer) -> None:
    token = issuer.token(["/staff", "/fire-department"], sub="person-l-chen")
    response = http.get("/test/incidents", headers=bearer(token))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["person"] is True  # "who verified" is a person
    assert me["subject"] == "person-l-chen" and me["issuer"] == issuer.url
    assert me["kind"] == "department" and me["jurisdiction"] is True
    assert me["categories"] == ["Fire"] and me["client_id"] == "city-portal"
    assert "incidents:verify" in me["scopes"]


def test_group_order_and_other_roles(http: TestClient, issuer: Issuer) -> None:
    # Two mapped groups: the first in the configuration wins, never a union of both.
    both = issuer.token(["/mission-committee", "/fire-department"])
    assert http.get("/test/me", headers=bearer(both)).json()["kind"] == "department"
    community = http.get("/test/me", headers=bearer(issuer.token(["/mission-committee"])))
    assert community.json()["community_id"] == "Mission"
    analyst = issuer.token(["/analysts"])
    assert http.get("/test/me", headers=bearer(analyst)).json()["scopes"] == ["risk:read"]
    assert http.get("/test/incidents", headers=bearer(analyst)).status_code == 403


def test_refused_person_tokens(http: TestClient, issuer: Issuer) -> None:
    stranger = new_ec_key()
    for why, token, status in [
        ("wrong audience", issuer.token(["/fire-department"], aud="account"), 401),
        ("unmapped group", issuer.token(["/parks-department"]), 403),
        ("no groups claim", issuer.token(None), 403),
        ("expired", issuer.token(["/fire-department"], exp=int(time.time()) - 120), 401),
        ("no sub", issuer.token(["/fire-department"], sub=None), 401),
        ("signed by a key not in its JWKS", issuer.token(["/fire-department"], key=stranger), 401),
    ]:
        response = http.get("/test/me", headers=bearer(token))
        assert response.status_code == status, (why, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        if status == 403:
            assert "no role at the hub" in response.json()["detail"]
        else:
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # An ID-token-like typ is not an access token (token_types defaults to at+jwt only).
    key = issuer.keys[-1]
    now = int(time.time())
    id_token = forge(
        {"alg": "ES256", "typ": "JWT", "kid": key.kid},
        {"iss": issuer.url, "aud": "hub", "sub": "p", "exp": now + 60, "groups": ["/analysts"]},
        key,
    )
    assert http.get("/test/me", headers=bearer(id_token)).status_code == 401


def test_issuer_key_rotation(settings: Settings, issuer: Issuer) -> None:
    verifier = TokenVerifier(settings)
    remote = verifier.issuers[issuer.url]
    assert verifier.verify(issuer.token(["/analysts"])).kind == "analyst"
    fetched = issuer.fetches
    verifier.verify(issuer.token(["/analysts"]))
    assert issuer.fetches == fetched  # cached

    issuer.keys.append(new_ec_key())  # the issuer rotates
    remote.min_refresh_s = 0  # (default 10 s between re-fetches on unknown kids)
    assert verifier.verify(issuer.token(["/analysts"])).kind == "analyst"
    assert issuer.fetches == fetched + 1  # an unknown kid re-fetched the JWKS once

    # Unknown kids do not hammer the issuer: within min_refresh_s they are refused at once.
    remote.min_refresh_s = 60
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(issuer.token(["/analysts"], key=new_ec_key()))
    assert issuer.fetches == fetched + 1


def test_misconfiguration_fails_at_start_up(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jurisdiction is required"):
        IssuerRole(kind="department")
    with pytest.raises(ValueError, match="scopes beyond"):
        IssuerRole(kind="analyst", scopes=["incidents:verify"])
    with pytest.raises(ValueError, match="CAP words"):
        IssuerRole(kind="department", jurisdiction=tmp_path / "a.geojson", categories=["Fires"])
    plain_http = TrustedIssuer(
        issuer="https://idp.example/realms/city",
        jwks_url="http://idp.example/certs",
        mapping={"/a": IssuerRole(kind="analyst")},
    )
    with pytest.raises(ValueError, match="https"):
        TokenVerifier(Settings(database_url=database_url, trusted_issuers=[plain_http]))
    missing = TrustedIssuer(
        issuer="https://idp.example/realms/city",
        jwks_url="https://idp.example/certs",
        mapping={"/d": IssuerRole(kind="department", jurisdiction=tmp_path / "none.geojson")},
    )
    with pytest.raises(ValueError, match="cannot read"):
        TokenVerifier(Settings(database_url=database_url, trusted_issuers=[missing]))
