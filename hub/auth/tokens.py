"""Access token verification (RFC 8725 best practice, RFC 9068 JWT access tokens).

Two kinds of token are accepted:

* the hub's own (``iss`` = the configured issuer): ``typ: at+jwt``, signed by a key of the
  ``signing_key`` table that is active or retired less than one token lifetime ago, for a client
  that is still registered and not revoked (looked up on each request, cached a second at most);
* a person's, from a configured OpenID Connect issuer: signed by a key of that issuer's JWKS
  (fetched from the configured URL, never from the token), mapped to a principal through a
  configured claim (a group or role).

Whatever the token says about how to verify it is ignored: the algorithm must be on the
allow-list and match the key we chose, and a header that names or embeds a key (``jwk``,
``jku``, ``x5u``, ``x5c``) or asks for extensions (``crit``) makes the token invalid.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jws import JWSAlgModel, JWSRegistry
from sqlalchemy import Engine

from hub.access.principal import DEFAULT_SCOPES, Principal
from hub.auth import clients
from hub.auth.keysets import CachedKey, LocalKeys, RemoteKeys
from hub.errors import NotAllowed, Unauthenticated
from hub.settings import IssuerRole, Settings, TrustedIssuer

log = logging.getLogger("hub.auth")

#: The only signature algorithms accepted, whatever a token's header asks for.
ALGORITHMS: tuple[str, ...] = ("ES256", "EdDSA")
#: Header parameters that would let the token choose its own key or processing rules.
FORBIDDEN_HEADERS: tuple[str, ...] = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit")
MAX_TOKEN_LENGTH = 8192  # a few hundred bytes in practice; refuse to parse megabytes
ACCESS_TOKEN_TYPE = "at+jwt"


class InvalidToken(Unauthenticated):
    """The token is not acceptable (401). The message is safe to show the caller."""


class NoRole(NotAllowed):
    """A valid token whose holder has no role at the hub (403)."""


class _Registry(JWSRegistry):
    """joserfc's registry, narrowed to the allow-list, without its EdDSA naming warning.

    RFC 9864 prefers the name ``Ed25519`` over ``EdDSA``; the algorithm is the same and
    ``EdDSA`` is what issuers send today, so the warning would only be noise per request.
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        if name not in ALGORITHMS or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


REGISTRY = _Registry(algorithms=ALGORITHMS)


def _b64json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, *unverified*: only to choose how to verify it."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    parts = token.split(".")
    if len(parts) != 3:  # five parts would be an encrypted JWT, which nobody issues to the hub
        raise InvalidToken("not a signed JWT")
    return _b64json(parts[0]), _b64json(parts[1])


def check_header(header: dict[str, Any]) -> tuple[str, str]:
    """The allow-listed ``alg`` and the ``kid`` of a header, or InvalidToken."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        # Covers "none" and HS256 (a public key used as an HMAC secret: algorithm confusion).
        raise InvalidToken(f"algorithm {str(alg)[:16]!r} is not accepted")
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidToken(f"header parameter {name!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("no key id (kid)")
    return alg, kid


def _check_type(header: dict[str, Any], accepted: Iterable[str]) -> None:
    typ = header.get("typ")
    normalized = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
    if normalized not in {t.lower().removeprefix("application/") for t in accepted}:
        raise InvalidToken(f"token type {str(typ)[:16]!r} is not an access token")


def _decode(token: str, entry: CachedKey, alg: str) -> dict[str, Any]:
    """Verify the signature with the key *we* chose for this kid and issuer."""
    if entry.alg != alg or entry.key.alg not in (None, alg):
        raise InvalidToken("algorithm does not match the key")
    key = entry.key
    try:
        decoded = jwt.decode(token, key, algorithms=[alg], registry=REGISTRY)
    except JoseError:
        raise InvalidToken("signature does not verify") from None
    return decoded.claims


def _validate(claims: dict[str, Any], leeway: int, **options: Any) -> None:
    try:
        jwt.JWTClaimsRegistry(leeway=leeway, exp={"essential": True}, **options).validate(claims)
    except JoseError as exc:
        raise InvalidToken(_claim_message(exc)) from None


def _claim_message(exc: JoseError) -> str:
    if exc.error == "expired_token":
        return "token expired"
    return str(exc.description or exc.error)


# The client cache (the key caches: ``hub.auth.keysets``) ---------------------------------


class ClientCache:
    """Client registry rows by id, for ``max_age_s`` at most (revocation lag).

    Only looked up after a signature verified, so its keys are real client ids: it cannot be
    grown by forged tokens.
    """

    def __init__(self, engine: Engine, max_age_s: float) -> None:
        self._engine, self.max_age_s = engine, max_age_s
        self._entries: dict[str, tuple[float, clients.Client | None]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> clients.Client | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(client_id)
        if hit is not None and now - hit[0] < self.max_age_s:
            return hit[1]
        with self._engine.connect() as conn:
            client = clients.get_client(conn, client_id)
        with self._lock:
            self._entries[client_id] = (now, client)
        return client


# The verifier -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedToken:
    client_id: str
    scope: str
    valid_until: float  # epoch seconds: exp + leeway


class VerifiedTokens:
    """The hub's own tokens whose signature and claims have been checked, until they expire.

    A client sends the same token for up to 15 minutes; checking its ECDSA signature and claims
    again on every request cost ~0.3 ms. Bounded (least recently used out first). Revocation is
    not cached here: the verifier asks the client cache on every request.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> VerifiedToken | None:
        with self._lock:
            found = self._entries.get(token)
            if found is None:
                return None
            if time.time() >= found.valid_until:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return found

    def put(self, token: str, verified: VerifiedToken) -> None:
        with self._lock:
            self._entries[token] = verified
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises InvalidToken / NoRole."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        from hub.store.db import api_engine

        engine = engine or api_engine(settings, "authenticate")
        self.settings = settings
        self.local_keys = LocalKeys(engine, settings)
        self.clients = ClientCache(engine, settings.auth_client_cache_s)
        self.verified = VerifiedTokens()
        self.issuers: dict[str, RemoteKeys] = {}
        self._trusted: dict[str, TrustedIssuer] = {}
        # Departments' areas of the issuers' roles, read once: a bad file fails at start-up.
        self._areas: dict[tuple[str, str], bytes] = {}
        for trusted in settings.trusted_issuers:
            if trusted.issuer == settings.token_issuer:
                raise ValueError("a trusted issuer cannot use the hub's own issuer name")
            self.issuers[trusted.issuer] = RemoteKeys(trusted.jwks_url, settings.jwks_timeout_s)
            self._trusted[trusted.issuer] = trusted
            for value, role in trusted.mapping.items():
                if role.jurisdiction is not None:
                    area = clients.read_jurisdiction(role.jurisdiction)
                    self._areas[(trusted.issuer, value)] = area.wkb

    def verify(self, token: str) -> Principal:
        header, unverified = split_token(token)
        alg, kid = check_header(header)
        # The unverified iss only chooses which configured keys to try; it is checked again
        # once the signature has verified.
        issuer = unverified.get("iss")
        if issuer == self.settings.token_issuer:
            return self._verify_own(token, header, alg, kid)
        if isinstance(issuer, str) and issuer in self._trusted:
            return self._verify_person(token, header, alg, kid, self._trusted[issuer])
        raise InvalidToken("untrusted issuer")

    def _verify_own(self, token: str, header: dict[str, Any], alg: str, kid: str) -> Principal:
        verified = self.verified.get(token)
        if verified is None:
            verified = self._check_own(token, header, alg, kid)
            self.verified.put(token, verified)
        client_id, scope = verified.client_id, verified.scope
        # Revocation is checked on every request, cached verification or not.
        client = self.clients.get(client_id)
        if client is None or not client.active:
            raise InvalidToken("the client is unknown or revoked")
        return client.principal(scope.split(), self.settings.token_issuer)

    def _check_own(self, token: str, header: dict[str, Any], alg: str, kid: str) -> VerifiedToken:
        _check_type(header, [ACCESS_TOKEN_TYPE])
        entry = self.local_keys.get(kid)
        if entry is None:
            raise InvalidToken("unknown key id")
        claims = _decode(token, entry, alg)
        essential = {"essential": True}
        _validate(
            claims,
            self.settings.token_leeway_s,
            iss={"essential": True, "value": self.settings.token_issuer},
            aud={"essential": True, "value": self.settings.token_audience},
            sub=essential,
            client_id=essential,
            iat=essential,
            jti=essential,
        )
        client_id = claims["client_id"]
        if not isinstance(client_id, str) or claims["sub"] != client_id:
            raise InvalidToken("sub and client_id differ")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("scope is not a string")
        valid_until = float(claims["exp"]) + self.settings.token_leeway_s
        return VerifiedToken(client_id, scope, valid_until)

    def _verify_person(
        self, token: str, header: dict[str, Any], alg: str, kid: str, trusted: TrustedIssuer
    ) -> Principal:
        _check_type(header, trusted.token_types)
        entry = self.issuers[trusted.issuer].get(kid)
        if entry is None:
            raise InvalidToken("unknown key id")
        claims = _decode(token, entry, alg)
        _validate(
            claims,
            self.settings.token_leeway_s,
            iss={"essential": True, "value": trusted.issuer},
            aud={"essential": True, "value": trusted.audience},
            sub={"essential": True},
        )
        held = _claim_values(claims, trusted.claim)
        for value, role in trusted.mapping.items():  # configuration order decides
            if value in held:
                return self._person(claims, trusted, value, role)
        raise NoRole(f"no role at the hub for this person's {trusted.claim}")

    def _person(
        self, claims: dict[str, Any], trusted: TrustedIssuer, value: str, role: IssuerRole
    ) -> Principal:
        scopes = frozenset(role.scopes) if role.scopes is not None else DEFAULT_SCOPES[role.kind]
        client_id = claims.get("azp") or claims.get("client_id")
        return Principal(
            subject=str(claims["sub"]),
            kind=role.kind,
            scopes=scopes,
            issuer=trusted.issuer,
            client_id=client_id if isinstance(client_id, str) else None,
            community_id=role.community_id,
            jurisdiction_wkb=self._areas.get((trusted.issuer, value)),
            categories=frozenset(role.categories) if role.categories is not None else None,
            person=True,
        )


def _claim_values(claims: dict[str, Any], path: str) -> set[str]:
    """The strings at a dotted claim path (``groups``, ``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return set()
        value = value.get(part)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()
