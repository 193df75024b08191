"""Token checks (RFC 8725): forged and broken tokens are refused, genuine ones accepted.

Every forged token goes through the real dependency on a probe route: 401, a
``WWW-Authenticate: Bearer error="invalid_token"`` challenge and a problem+json body. The
figure that matters: accepted forgeries = 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from hub.auth import keys
from hub.auth.clients import Client, revoke_client
from hub.auth.tokens import REGISTRY
from hub.settings import Settings
from hub.store.db import get_engine
from tests.auth_helpers import (
    auth_settings,
    b64url,
    bearer,
    claims_for,
    forge,
    hoods,
    http,
    new_ec_key,
    parts,
    register,
    token_for,
)

__all__ = ["auth_settings", "hoods", "http"]  # fixtures

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def community(auth_settings: Settings, hoods: list[str]) -> tuple[Client, str]:
    client, secret = register(auth_settings, kind="community", community_id="Mission")
    assert secret is not None
    return client, secret


@pytest.fixture(scope="module")
def signing(auth_settings: Settings, http: TestClient) -> tuple[str, ECKey]:
    """The hub's active key: forgeries signed with it isolate the claim and header checks."""
    with get_engine(auth_settings).begin() as conn:
        return keys.active_key(conn, auth_settings)


def assert_refused(http: TestClient, token: str, why: str) -> None:
    response = http.get("/test/me", headers=bearer(token))
    assert response.status_code == 401, f"{why}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="hub", error="invalid_token"'), challenge
    body = response.json()
    assert body["status"] == 401 and body["detail"], body


def test_a_genuine_token_is_accepted(http: TestClient, community: tuple[Client, str]) -> None:
    client, secret = community
    token = token_for(http, client.client_id, secret)
    response = http.get("/test/incidents", headers=bearer(token))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["kind"] == "community" and me["community_id"] == "Mission"
    assert me["subject"] == me["client_id"] == client.client_id
    assert me["person"] is False
    assert "admin" not in me["scopes"] and "incidents:read" in me["scopes"]


def test_scope_and_audience_list(
    http: TestClient,
    auth_settings: Settings,
    community: tuple[Client, str],
    signing: tuple[str, ECKey],
) -> None:
    client, secret = community
    # A token without incidents:read: authenticated, but not for that route (403).
    narrow = token_for(http, client.client_id, secret, scope="risk:read")
    assert http.get("/test/me", headers=bearer(narrow)).status_code == 200
    response = http.get("/test/incidents", headers=bearer(narrow))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="incidents:read"' in response.headers["www-authenticate"]
    # aud may be a list: accepted when it names the hub (RFC 7519 4.1.3).
    kid, key = signing
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    listed = forge(header, claims_for(auth_settings, client.client_id, aud=["x", "hub"]), key)
    assert http.get("/test/me", headers=bearer(listed)).status_code == 200


def test_no_token_and_wrong_scheme(http: TestClient) -> None:
    response = http.get("/test/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="hub"'  # RFC 6750 3.1
    assert response.headers["content-type"] == PROBLEM
    response = http.get("/test/me", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_forged_and_broken_tokens_are_all_refused(
    http: TestClient,
    auth_settings: Settings,
    community: tuple[Client, str],
    signing: tuple[str, ECKey],
) -> None:
    client, secret = community
    kid, key = signing
    cid = client.client_id
    genuine = token_for(http, cid, secret)
    head, body, sig = genuine.split(".")
    public_jwk = key.as_dict(private=False)
    attacker = new_ec_key()
    good = {"alg": "ES256", "typ": "at+jwt", "kid": kid}

    def claims(**overrides: Any) -> dict[str, Any]:
        return claims_for(auth_settings, cid, **overrides)

    def tampered_payload() -> str:
        payload = parts(genuine)[1] | {"scope": "admin incidents:read"}
        return f"{head}.{b64url(json.dumps(payload).encode())}.{sig}"

    def tampered_signature() -> str:
        raw = bytearray(sig.encode())
        raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
        return f"{head}.{body}.{raw.decode()}"

    eddsa = OKPKey.generate_key("Ed25519", private=True)
    now = int(time.time())
    none = {"alg": "none", "typ": "at+jwt", "kid": kid}
    # why -> (the token, what the refusal must say: a forgery refused for another reason
    # would hide a missing check)
    cases: dict[str, tuple[Callable[[], str], str]] = {
        "alg none": (lambda: forge(none, claims(), None), "'none' is not accepted"),
        "alg none, no signature part": (
            lambda: ".".join(forge(none, claims(), None).split(".")[:2]),
            "not a signed JWT",
        ),
        "HS256, public JWK as HMAC secret": (
            lambda: forge(good | {"alg": "HS256"}, claims(), json.dumps(public_jwk).encode()),
            "'HS256' is not accepted",
        ),
        "HS256, public PEM as HMAC secret": (
            lambda: forge(good | {"alg": "HS256"}, claims(), key.as_pem(private=False)),
            "'HS256' is not accepted",
        ),
        "RS256 (not on the allow-list)": (
            lambda: forge(good | {"alg": "RS256"}, claims(), key),
            "'RS256' is not accepted",
        ),
        "EdDSA header, the hub's EC kid": (
            lambda: forge(good | {"alg": "EdDSA"}, claims(), eddsa),
            "does not match the key",
        ),
        "unknown kid": (
            lambda: forge(good | {"kid": "no-such-key"}, claims(), attacker),
            "unknown key id",
        ),
        "no kid": (lambda: forge({"alg": "ES256", "typ": "at+jwt"}, claims(), key), "no key id"),
        "signed by a key not in the JWKS": (
            lambda: forge(good, claims(), attacker),
            "signature does not verify",
        ),
        "embedded jwk header": (
            lambda: forge(good | {"jwk": attacker.as_dict(private=False)}, claims(), attacker),
            "'jwk' is not accepted",
        ),
        "embedded jwk header, hub key": (
            lambda: forge(good | {"jwk": attacker.as_dict(private=False)}, claims(), key),
            "'jwk' is not accepted",
        ),
        "jku header": (
            lambda: forge(good | {"jku": "http://127.0.0.1:9/jwks.json"}, claims(), attacker),
            "'jku' is not accepted",
        ),
        "x5u header": (
            lambda: forge(good | {"x5u": "http://127.0.0.1:9/cert.pem"}, claims(), attacker),
            "'x5u' is not accepted",
        ),
        "x5c header": (
            lambda: forge(good | {"x5c": ["MIIB"]}, claims(), key),
            "'x5c' is not accepted",
        ),
        "crit header": (
            lambda: forge(good | {"crit": ["exp"]}, claims(), key),
            "'crit' is not accepted",
        ),
        "wrong typ (JWT)": (
            lambda: forge(good | {"typ": "JWT"}, claims(), key),
            "not an access token",
        ),
        "no typ": (
            lambda: forge({"alg": "ES256", "kid": kid}, claims(), key),
            "not an access token",
        ),
        "wrong iss": (
            lambda: forge(good, claims(iss="https://evil.example"), key),
            "untrusted issuer",
        ),
        "no iss": (lambda: forge(good, claims(iss=None), key), "untrusted issuer"),
        "token for another audience": (
            lambda: forge(good, claims(aud="billing-service"), key),
            "'aud'",
        ),
        "no aud": (lambda: forge(good, claims(aud=None), key), "'aud'"),
        "expired": (
            lambda: forge(good, claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600), key),
            "expired",
        ),
        "nbf in the future": (
            lambda: forge(good, claims(nbf=now + 3600, exp=now + 7200), key),
            "not yet valid",
        ),
        "iat in the future": (
            lambda: forge(good, claims(iat=now + 3600, exp=now + 7200), key),
            "issued in the future",
        ),
        "missing exp": (lambda: forge(good, claims(exp=None), key), "'exp'"),
        "exp not a number": (lambda: forge(good, claims(exp="never"), key), "'exp'"),
        "sub differs from client_id": (
            lambda: forge(good, claims(sub="admin-1"), key),
            "sub and client_id differ",
        ),
        "unknown client": (
            lambda: forge(good, claims(sub="admin-nobody", client_id="admin-nobody"), key),
            "unknown or revoked",
        ),
        "tampered payload (scope admin)": (tampered_payload, "signature does not verify"),
        "tampered signature": (tampered_signature, "signature does not verify"),
        "signature stripped": (lambda: f"{head}.{body}.", "signature does not verify"),
        "valid token of an untrusted issuer": (
            lambda: forge(
                {"alg": "ES256", "typ": "at+jwt", "kid": attacker.thumbprint()},
                claims(iss="http://127.0.0.1:9/realms/evil"),
                attacker,
            ),
            "untrusted issuer",
        ),
        "five parts (JWE-shaped)": (lambda: genuine + ".x.y", "not a signed JWT"),
        "garbage": (lambda: "not-a-token", "not a signed JWT"),
        "header not JSON": (lambda: f"{b64url(b'{nope')}.{body}.{sig}", "malformed"),
        "oversized": (lambda: forge(good, claims(pad="x" * 10_000), key), "too long"),
    }
    accepted, wrong_reason = [], []
    for why, (make, reason) in cases.items():
        response = http.get("/test/me", headers=bearer(make()))
        if response.status_code != 401:
            accepted.append(f"{why}: {response.status_code}")
            continue
        assert_refused(http, make(), why)
        if reason not in response.json()["detail"]:
            wrong_reason.append(f"{why}: {response.json()['detail']}")
    assert len(cases) >= 15
    assert accepted == [], accepted
    assert wrong_reason == [], wrong_reason


def test_the_jose_layer_alone_refuses_them_too(signing: tuple[str, ECKey]) -> None:
    """A second wall: joserfc with the hub's registry, given *our* key, never trusts the token.

    (The verifier refuses these before decoding; this shows that a bug in that pre-check
    would still not let them through.)
    """
    kid, key = signing
    attacker = new_ec_key()
    claims = {"sub": "x", "exp": int(time.time()) + 60}
    good = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    forged = [
        forge(good | {"alg": "none"}, claims, None),
        forge(good | {"alg": "HS256"}, claims, json.dumps(key.as_dict(private=False)).encode()),
        forge(good | {"alg": "HS256"}, claims, key.as_pem(private=False)),
        forge(good | {"jwk": attacker.as_dict(private=False)}, claims, attacker),
        forge(good | {"jku": "http://127.0.0.1:9/jwks.json"}, claims, attacker),
        forge(good | {"crit": ["urn:x"], "urn:x": 1}, claims, key),
    ]
    for token in forged:
        with pytest.raises(JoseError):
            jwt.decode(token, ECKey.import_key(key.as_dict(private=False)), registry=REGISTRY)


def test_tokens_of_a_revoked_client_fail(
    http: TestClient, auth_settings: Settings, hoods: list[str]
) -> None:
    client, secret = register(auth_settings, kind="analyst")
    assert secret is not None
    token = token_for(http, client.client_id, secret)
    assert http.get("/test/me", headers=bearer(token)).status_code == 200
    with get_engine(auth_settings).begin() as conn:
        assert revoke_client(conn, client.client_id)
    time.sleep(auth_settings.auth_client_cache_s + 0.05)  # the documented revocation lag
    assert_refused(http, token, "revoked client")
    response = http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
