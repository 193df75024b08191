"""The authorization server: client authentication, the token, errors, metadata, rotation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from fastapi.testclient import TestClient
from joserfc.jwk import OKPKey
from sqlalchemy import text
from typer.testing import CliRunner

from hub.access.principal import DEFAULT_SCOPES, SCOPES
from hub.auth.clients import Client
from hub.cli.main import app as cli
from hub.settings import Settings, get_settings
from hub.store.db import get_engine
from hub.store.migrate import drop_database, upgrade
from tests.auth_helpers import (
    auth_settings,
    bearer,
    hoods,
    http,
    new_ec_key,
    parts,
    probe_app,
    register,
    token_for,
)

__all__ = ["auth_settings", "hoods", "http"]  # fixtures

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture(scope="module")
def department(auth_settings: Settings, hoods: list[str]) -> tuple[Client, str]:
    from shapely.geometry import MultiPolygon, box

    area = MultiPolygon([box(-122.43, 37.74, -122.40, 37.77)])
    client, secret = register(auth_settings, kind="department", jurisdiction=area)
    assert secret is not None
    return client, secret


def test_client_secret_basic_issues_an_rfc9068_token(
    http: TestClient, auth_settings: Settings, department: tuple[Client, str]
) -> None:
    client, secret = department
    response = http.post("/oauth/token", data=GRANT, auth=(client.client_id, secret))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert set(body["scope"].split()) == DEFAULT_SCOPES["department"]
    header, claims = parts(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == auth_settings.token_issuer == "http://127.0.0.1:8000"
    assert claims["aud"] == "hub"
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["exp"] - claims["iat"] == 900 and claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) >= 16
    me = http.get("/test/me", headers=bearer(body["access_token"])).json()
    assert me["kind"] == "department" and me["jurisdiction"] is True


def test_client_secret_post(http: TestClient, department: tuple[Client, str]) -> None:
    client, secret = department
    data = GRANT | {"client_id": client.client_id, "client_secret": secret}
    response = http.post("/oauth/token", data=data)
    assert response.status_code == 200, response.text


def test_wrong_or_missing_credentials_are_invalid_client(
    http: TestClient, department: tuple[Client, str]
) -> None:
    client, secret = department
    for auth, data in [
        ((client.client_id, secret + "x"), GRANT),
        (("department-nobody", secret), GRANT),
        (None, GRANT | {"client_id": client.client_id, "client_secret": "wrong"}),
        (None, GRANT | {"client_id": client.client_id}),
        (None, GRANT),
        (("a\x00b", secret), GRANT),  # PostgreSQL text cannot hold NUL: unknown, not a 500
    ]:
        response = http.post("/oauth/token", data=data, auth=auth)
        assert response.status_code == 401, (auth, data, response.text)
        assert response.json()["error"] == "invalid_client"
        assert response.headers["content-type"] == "application/json"
        assert "access_token" not in response.text
    nul = http.post("/oauth/token", data=GRANT | {"client_id": "a\x00b", "client_secret": secret})
    assert nul.status_code in (400, 401) and nul.json()["error"] == "invalid_client"  # RFC 6749 5.2
    basic = http.post("/oauth/token", data=GRANT, auth=(client.client_id, "wrong"))
    assert basic.headers["www-authenticate"].startswith("Basic ")


def test_request_errors(http: TestClient, department: tuple[Client, str]) -> None:
    client, secret = department
    auth = (client.client_id, secret)
    for data, error in [
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({"scope": "incidents:read"}, "invalid_request"),  # no grant_type
        ({}, "invalid_request"),  # no body at all
    ]:
        response = http.post("/oauth/token", data=data, auth=auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == error
    # Not a form, a repeated parameter, two authentication methods at once.
    response = http.post("/oauth/token", json=GRANT, auth=auth)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    response = http.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=auth,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    data = GRANT | {"client_id": client.client_id, "client_secret": secret}
    response = http.post("/oauth/token", data=data, auth=auth)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    response = http.post("/oauth/token", data=GRANT | {"scope": "x" * 20_000}, auth=auth)
    assert response.status_code == 413


def test_scope_down_selection(http: TestClient, department: tuple[Client, str]) -> None:
    client, secret = department
    auth = (client.client_id, secret)
    response = http.post("/oauth/token", data=GRANT | {"scope": "incidents:read"}, auth=auth)
    assert response.status_code == 200 and response.json()["scope"] == "incidents:read"
    assert parts(response.json()["access_token"])[1]["scope"] == "incidents:read"
    for beyond in ["admin", "incidents:read events:write", "nonsense"]:
        response = http.post("/oauth/token", data=GRANT | {"scope": beyond}, auth=auth)
        assert response.status_code == 400, (beyond, response.text)
        assert response.json()["error"] == "invalid_scope"


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # the client side signs
def test_private_key_jwt_and_replay(
    http: TestClient, auth_settings: Settings, hoods: list[str]
) -> None:
    key = new_ec_key()
    client, secret = register(
        auth_settings, kind="community", community_id="Mission", jwk=key.as_dict(private=False)
    )
    assert secret is None  # a key client has no secret to fall back on
    endpoint = auth_settings.token_issuer + "/oauth/token"

    def assertion_form(assertion: str) -> dict[str, str]:
        return GRANT | {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    assertion = private_key_jwt_sign(key, client.client_id, endpoint, alg="ES256", expires_in=120)
    response = http.post("/oauth/token", data=assertion_form(assertion))
    assert response.status_code == 200, response.text
    me = http.get("/test/me", headers=bearer(response.json()["access_token"])).json()
    assert me["client_id"] == client.client_id and me["community_id"] == "Mission"

    replay = http.post("/oauth/token", data=assertion_form(assertion))
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    assert "used" in replay.json()["error_description"]

    other = new_ec_key()
    for bad in [
        private_key_jwt_sign(other, client.client_id, endpoint, alg="ES256"),  # not its key
        private_key_jwt_sign(key, client.client_id, "https://elsewhere/token", alg="ES256"),
        private_key_jwt_sign(key, client.client_id, endpoint, alg="ES256", expires_in=86_400),
        private_key_jwt_sign(
            key, client.client_id, endpoint, alg="ES256", header={"jwk": other.as_dict()}
        ),
    ]:
        response = http.post("/oauth/token", data=assertion_form(bad))
        assert response.json()["error"] == "invalid_client", response.text
    # A key client cannot fall back to a secret; an Ed25519 client key works too.
    response = http.post(
        "/oauth/token", data=GRANT | {"client_id": client.client_id, "client_secret": "x"}
    )
    assert response.status_code == 401
    ed = OKPKey.generate_key("Ed25519", private=True)
    ed_client, _ = register(auth_settings, kind="analyst", jwk=ed.as_dict(private=False))
    ed_assertion = private_key_jwt_sign(ed, ed_client.client_id, endpoint, alg="EdDSA")
    response = http.post("/oauth/token", data=assertion_form(ed_assertion))
    assert response.status_code == 200, response.text


def test_jwks_and_metadata(http: TestClient, department: tuple[Client, str]) -> None:
    client, secret = department
    kid = parts(token_for(http, client.client_id, secret))[0]["kid"]
    jwks = http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    published = {k["kid"]: k for k in jwks.json()["keys"]}
    assert published[kid]["kty"] == "EC" and published[kid]["crv"] == "P-256"
    assert published[kid]["alg"] == "ES256" and published[kid]["use"] == "sig"
    assert all("d" not in k for k in published.values())  # never a private part
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "http://127.0.0.1:8000"
    assert meta["token_endpoint"] == "http://127.0.0.1:8000/oauth/token"
    assert meta["jwks_uri"] == "http://127.0.0.1:8000/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert meta["token_endpoint_auth_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert meta["scopes_supported"] == list(SCOPES)


# Rotation runs on a database of its own: pushing a key past its grace period would otherwise
# invalidate tokens that other modules hold.


@pytest.fixture(scope="module")
def own_settings(database_url: str) -> Iterator[Settings]:
    server = database_url.rsplit("/", 1)[0]
    settings = Settings(database_url=f"{server}/hub_keys_{uuid.uuid4().hex[:10]}")
    upgrade(settings)
    try:
        yield settings
    finally:
        get_engine(settings).dispose()
        drop_database(settings)


def _cli(settings: Settings, *args: str) -> str:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli, list(args), env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_key_rotation(own_settings: Settings, tmp_path: Path) -> None:
    client, secret = register(own_settings, kind="analyst")
    assert secret is not None
    with TestClient(probe_app(own_settings)) as http:
        before = token_for(http, client.client_id, secret)
        old_kid = parts(before)[0]["kid"]

        output = _cli(own_settings, "keys", "rotate")
        after = token_for(http, client.client_id, secret)
        new_kid = parts(after)[0]["kid"]
        assert new_kid != old_kid and new_kid in output
        # Both verify: the old key is retired, not gone; both are published.
        assert http.get("/test/me", headers=bearer(before)).status_code == 200
        assert http.get("/test/me", headers=bearer(after)).status_code == 200
        published = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
        assert {old_kid, new_kid} <= published
        listing = _cli(own_settings, "keys", "list")
        assert old_kid in listing and "active" in listing and "verifies until" in listing

    # One token lifetime after its retirement the old key verifies nothing, even a token
    # whose exp is still ahead (as one signed by a stolen retired key would be).
    with get_engine(own_settings).begin() as conn:
        conn.execute(
            text(
                "UPDATE signing_key SET retired_at = now() - make_interval(secs => :s) "
                "WHERE kid = :kid"
            ),
            {"s": own_settings.token_ttl_s + 1, "kid": old_kid},
        )
    with TestClient(probe_app(own_settings)) as http:
        response = http.get("/test/me", headers=bearer(before))
        assert response.status_code == 401 and "unknown key id" in response.json()["detail"]
        assert http.get("/test/me", headers=bearer(after)).status_code == 200
        published = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
        assert published == {new_kid}
    assert time.time() < parts(before)[1]["exp"]  # refused for the key, not for expiry
