"""The hub's OAuth 2.0 authorization server (authlib): client credentials, JWT access tokens.

* grant: ``client_credentials`` only (RFC 6749 4.4); people sign in at their city's OpenID
  Connect provider, not here;
* client authentication: ``client_secret_basic``, ``client_secret_post`` and
  ``private_key_jwt`` (RFC 7523, single-use assertions: their ``jti`` is recorded);
* tokens: RFC 9068 JWT access tokens, ``typ: at+jwt``, ES256, signed with the active key of
  :mod:`hub.auth.keys`; nothing is stored per token (revocation is per client).

Framework-neutral: :meth:`HubAuthorizationServer.token_response` takes the form fields and the
headers and returns ``(status, body, headers)``; :mod:`hub.api.oauth` does the HTTP.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey
from sqlalchemy import Engine, text

from hub.access.principal import SCOPES
from hub.auth import clients, keys
from hub.auth.tokens import ALGORITHMS, REGISTRY, InvalidToken, check_header
from hub.settings import Settings

log = logging.getLogger("hub.auth")

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
GRANT_TYPES = ["client_credentials"]
MAX_ASSERTION_LIFETIME_S = 3600 + 60  # authlib clients default to 1 h; bounds the jti table
TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/.well-known/jwks.json"


def token_endpoint(settings: Settings) -> str:
    return settings.token_issuer + TOKEN_PATH


def metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    issuer = settings.token_issuer
    return {
        "issuer": issuer,
        "token_endpoint": token_endpoint(settings),
        "jwks_uri": issuer + JWKS_PATH,
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],  # no authorization endpoint: no browser flows here
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES),
    }


class _FormRequest(OAuth2Request):
    """authlib's request, from already-parsed form fields (the body is read by the API)."""

    def __init__(self, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        # Down-selection only: a client may ask for fewer of its scopes, never for more.
        requested = set(scope_to_list(self.request.payload.scope) or [])
        if not requested <= self.request.client.scopes:
            raise InvalidScopeError("the client may not hold the requested scope")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        # authlib's version logs the whole token at debug level: a bearer secret in the logs.
        token = self.generate_token(scope=self.request.payload.scope, include_refresh_token=False)
        log.info(
            "token issued",
            extra={"client_id": self.request.client.client_id, "scope": token["scope"]},
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client assertions, signed with the client's registered key."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: HubAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=server.settings.token_leeway_s)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [token_endpoint(self.server.settings), self.server.settings.token_issuer]

    def resolve_client_public_key(self, client: clients.Client) -> Key:
        if not client.public_jwk:
            raise InvalidClientError(description="the client has no registered key")
        if client.public_jwk.get("kty") == "OKP":
            return OKPKey.import_key(client.public_jwk)
        return ECKey.import_key(client.public_jwk)

    def process_assertion_claims(self, assertion: str, resolve_key: Key) -> dict[str, Any]:
        # authlib decodes with joserfc's default algorithm list; hold assertions to the same
        # rules as access tokens (allow-list, no embedded or referenced keys, no crit).
        try:
            decoded = jwt.decode(assertion, resolve_key, registry=REGISTRY)
            check_header({"kid": "-", **decoded.header})  # one key per client: kid optional
        except (JoseError, InvalidToken) as exc:
            raise InvalidClientError(
                description=_ascii(f"invalid client assertion: {exc}")
            ) from None
        claims = decoded.claims
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_ASSERTION_LIFETIME_S:
            raise InvalidClientError(description="client assertion lives too long")
        self.verify_claims(claims)
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Record the assertion's jti; False when it was used before (a replay)."""
        with self.server.engine.begin() as conn:
            conn.execute(text("DELETE FROM used_jti WHERE expires_at < now()"))
            inserted = conn.execute(
                text(
                    "INSERT INTO used_jti (client_id, jti, expires_at) "
                    "VALUES (:client_id, :jti, to_timestamp(:exp)) ON CONFLICT DO NOTHING"
                ),
                {"client_id": claims["sub"], "jti": str(jti), "exp": float(claims["exp"])},
            )
        return inserted.rowcount == 1


def _ascii(text_: str) -> str:
    # RFC 6749 5.2: error_description is ASCII without '"' and '\\'.
    return "".join(c for c in text_ if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:200]


class HubAuthorizationServer(AuthorizationServer):
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        from hub.store.db import api_engine

        super().__init__(scopes_supported=list(SCOPES))
        self.settings = settings
        self.engine = engine or api_engine(settings, "authenticate")
        self.register_grant(_ClientCredentials)
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJwt(self))
        self.register_token_generator("default", self._generate_token)

    # authlib hooks ---------------------------------------------------------------------
    def query_client(self, client_id: str) -> clients.Client | None:
        with self.engine.connect() as conn:
            client = clients.get_client(conn, client_id)
        return client if client is not None and client.active else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        pass  # self-contained JWTs: nothing to store

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # built by token_response from the parsed form

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return status, body, headers

    def _generate_token(
        self,
        grant_type: str,
        client: clients.Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        """An RFC 9068 access token; no scope asked: all the client's scopes."""
        granted = sorted(set(scope_to_list(scope) or client.scopes))
        ttl = self.settings.token_ttl_s
        now = int(time.time())
        with self.engine.begin() as conn:
            kid, key = keys.active_key(conn, self.settings)
        claims = {
            "iss": self.settings.token_issuer,
            "aud": self.settings.token_audience,
            "sub": client.client_id,
            "client_id": client.client_id,
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": keys.ALG, "typ": "at+jwt", "kid": kid}
        access_token = jwt.encode(header, claims, key, algorithms=[keys.ALG])
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": claims["scope"],
        }

    # the one entry point ---------------------------------------------------------------
    def token_response(
        self, form: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Answer a token request: ``(status, JSON body, headers)`` per RFC 6749 5.1/5.2."""
        try:
            if not form.get("grant_type"):
                raise InvalidRequestError("missing grant_type")  # authlib would say unsupported
            _one_client_authentication(form, headers)
            request = _FormRequest(token_endpoint(self.settings), headers, form)
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        return self.create_token_response(request)


def _one_client_authentication(form: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """RFC 6749 2.3: a client MUST NOT use more than one authentication method per request."""
    used = [
        headers.get("Authorization", "").lower().startswith("basic "),
        "client_secret" in form,
        "client_assertion" in form,
    ]
    if sum(used) > 1:
        raise InvalidRequestError("more than one client authentication method")
