"""The client registry: machine clients of the hub's authorization server.

A client is a community system, a department's system, an analyst's tool or an admin. It
authenticates with a secret (stored as a scrypt hash only, compared in constant time) or with
a registered public key (RFC 7523 ``private_key_jwt``). What it may reach comes from here on
every request, so revoking a client takes effect at once, not when its tokens expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import shapely
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from shapely.geometry import MultiPolygon, Polygon
from shapely.validation import explain_validity
from sqlalchemy import Connection, text

from geo.geojson import GeoJSONError, polygonal, read_json
from hub.access.principal import DEFAULT_SCOPES, KINDS, Kind, Principal
from hub.errors import InvalidInput
from schemas.event import CATEGORIES

GRANT_TYPE = "client_credentials"
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
KEY_METHODS = frozenset({"private_key_jwt"})

# scrypt (RFC 7914) cost: ~16 MiB and some tens of ms per check; secrets are random and long,
# so this guards a leaked table against cheap offline guessing rather than weak passwords.
_N, _R, _P = 2**14, 8, 1


class ClientError(InvalidInput, ValueError):
    """A client cannot be registered as asked; the message says why."""


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Client:
    """One registered client; implements what authlib's ``ClientMixin`` asks of a client."""

    client_id: str
    kind: Kind
    name: str
    scopes: frozenset[str]
    community_id: str | None = None
    jurisdiction_wkb: bytes | None = field(default=None, repr=False)
    categories: frozenset[str] | None = None
    public_jwk: dict[str, Any] | None = field(default=None, repr=False)
    secret_hash: str | None = field(default=None, repr=False)
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def auth_methods(self) -> frozenset[str]:
        # A key-holding client never falls back to a secret: that would undo the key's point.
        return KEY_METHODS if self.public_jwk else SECRET_METHODS

    def principal(self, scopes: Iterable[str], issuer: str) -> Principal:
        """The principal of one of its tokens: granted scopes, narrowed to what it holds now."""
        return Principal(
            subject=self.client_id,
            kind=self.kind,
            scopes=frozenset(scopes) & self.scopes,
            issuer=issuer,
            client_id=self.client_id,
            community_id=self.community_id,
            jurisdiction_wkb=self.jurisdiction_wkb,
            categories=self.categories,
        )

    # authlib ClientMixin ---------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # no browser flows at this server

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return check_secret(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in self.auth_methods

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


# Validation of what `hub client create` is given ------------------------------------------


def read_jurisdiction(path: Path) -> MultiPolygon:
    """A department's area from a GeoJSON file (geometry, Feature or FeatureCollection)."""
    try:
        doc = read_json(path)
    except GeoJSONError as exc:
        raise ClientError(f"cannot read {path}: {exc.__cause__}") from None
    return jurisdiction_from_geojson(doc)


def jurisdiction_from_geojson(doc: Any) -> MultiPolygon:
    if not isinstance(doc, dict):
        raise ClientError("jurisdiction: not a GeoJSON object")
    if doc.get("type") == "FeatureCollection":
        geometries = [f.get("geometry") for f in doc.get("features") or []]
    elif doc.get("type") == "Feature":
        geometries = [doc.get("geometry")]
    else:
        geometries = [doc]
    polygons: list[Polygon] = []
    for geometry in geometries:
        try:
            geom = polygonal(geometry)
        except GeoJSONError as exc:
            raise ClientError(f"jurisdiction: {exc}") from None
        polygons.extend(getattr(geom, "geoms", [geom]))
    if not polygons:
        raise ClientError("jurisdiction: no polygon")
    area = shapely.union_all(polygons)
    if isinstance(area, Polygon):
        area = MultiPolygon([area])
    if not isinstance(area, MultiPolygon) or area.is_empty:
        raise ClientError("jurisdiction: the polygons do not form an area")
    if not area.is_valid:
        raise ClientError(f"jurisdiction: invalid polygon ({explain_validity(area)})")
    min_x, min_y, max_x, max_y = area.bounds
    if min_x < -180 or max_x > 180 or min_y < -90 or max_y > 90:
        raise ClientError("jurisdiction: coordinates are not WGS84 longitude/latitude")
    return area


def public_jwk(data: Any) -> dict[str, Any]:
    """A client's public key for private_key_jwt: EC P-256 or Ed25519, never a private key."""
    if not isinstance(data, dict):
        raise ClientError("jwk: not a JSON object")
    if "keys" in data:  # a JWK Set with one key is what some tools write
        keys = data["keys"]
        if not isinstance(keys, list) or len(keys) != 1:
            raise ClientError("jwk: a key set must hold exactly one key")
        data = keys[0]
    if "d" in data:
        # Refuse rather than strip: a private key in a file handed around is itself an incident.
        raise ClientError("jwk: this is a PRIVATE key; register the public key only")
    try:
        if data.get("kty") == "EC" and data.get("crv") == "P-256":
            key: ECKey | OKPKey = ECKey.import_key(data)
            alg = "ES256"
        elif data.get("kty") == "OKP" and data.get("crv") == "Ed25519":
            key = OKPKey.import_key(data)
            alg = "EdDSA"
        else:
            raise ClientError("jwk: only EC P-256 (ES256) and OKP Ed25519 (EdDSA) keys")
    except (JoseError, ValueError, TypeError) as exc:
        if isinstance(exc, ClientError):
            raise
        raise ClientError(f"jwk: not a valid key ({exc})") from None
    kid = data.get("kid") or key.thumbprint()
    return {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}


def check_categories(categories: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(c.strip() for c in categories if c.strip())
    unknown = sorted(chosen - set(CATEGORIES))
    if unknown:
        raise ClientError(f"categories: {', '.join(unknown)} not CAP ({', '.join(CATEGORIES)})")
    if not chosen:
        raise ClientError("categories: empty list")
    return chosen


def check_scopes(kind: str, scopes: Iterable[str] | None) -> frozenset[str]:
    """The kind's defaults, or a subset of them: a kind's defaults are its ceiling."""
    if scopes is None:
        return DEFAULT_SCOPES[kind]
    chosen = frozenset(s.strip() for s in scopes if s.strip())
    beyond = sorted(chosen - DEFAULT_SCOPES[kind])
    if beyond:
        raise ClientError(f"scopes: a {kind} client may not hold {', '.join(beyond)}")
    if not chosen:
        raise ClientError("scopes: empty list")
    return chosen


# The registry ------------------------------------------------------------------------------

_COLUMNS = (
    "client_id, kind, name, scopes, community_id, ST_AsBinary(jurisdiction) AS jurisdiction, "
    "categories, public_jwk, secret_hash, created_at, revoked_at"
)


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        kind=row.kind,
        name=row.name,
        scopes=frozenset(row.scopes),
        community_id=row.community_id,
        jurisdiction_wkb=bytes(row.jurisdiction) if row.jurisdiction is not None else None,
        categories=frozenset(row.categories) if row.categories is not None else None,
        public_jwk=row.public_jwk,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_client(
    conn: Connection,
    *,
    kind: str,
    name: str | None = None,
    community_id: str | None = None,
    jurisdiction: MultiPolygon | None = None,
    categories: Iterable[str] | None = None,
    scopes: Iterable[str] | None = None,
    jwk: Any = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it with its secret (None for a key client), shown once."""
    if kind not in KINDS:
        raise ClientError(f"kind: one of {', '.join(KINDS)}")
    if (kind == "community") != (community_id is not None):
        raise ClientError("--community is required for, and only for, a community client")
    if (kind == "department") != (jurisdiction is not None):
        raise ClientError("--jurisdiction is required for, and only for, a department client")
    if categories is not None and kind != "department":
        raise ClientError("--categories only narrow a department client")
    cats = check_categories(categories) if categories is not None else None
    granted = check_scopes(kind, scopes)
    key = public_jwk(jwk) if jwk is not None else None
    if community_id is not None:
        found = conn.execute(
            text("SELECT 1 FROM community WHERE id = :id"), {"id": community_id}
        ).first()
        if found is None:
            raise ClientError(f"community {community_id!r} does not exist")

    client_id = f"{kind}-{secrets.token_hex(8)}"
    secret = None if key else secrets.token_urlsafe(32)
    row = conn.execute(
        text(
            "INSERT INTO oauth_client (client_id, kind, name, secret_hash, public_jwk, "
            "community_id, jurisdiction, categories, scopes) VALUES (:client_id, :kind, :name, "
            ":secret_hash, CAST(:jwk AS jsonb), :community_id, "
            "ST_GeomFromWKB(:jurisdiction, 4326), :categories, :scopes) "
            f"RETURNING {_COLUMNS}"
        ),
        {
            "client_id": client_id,
            "kind": kind,
            "name": name or client_id,
            "secret_hash": hash_secret(secret) if secret else None,
            "jwk": json.dumps(key) if key else None,
            "community_id": community_id,
            "jurisdiction": jurisdiction.wkb if jurisdiction is not None else None,
            "categories": sorted(cats) if cats is not None else None,
            "scopes": sorted(granted),
        },
    ).one()
    return _client(row), secret


def get_client(conn: Connection, client_id: str) -> Client | None:
    """The client, revoked or not (callers check ``active``)."""
    if "\x00" in client_id:  # no client id holds NUL (PostgreSQL text cannot): unknown
        return None
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM oauth_client WHERE client_id = :id"), {"id": client_id}
    ).first()
    return _client(row) if row is not None else None


def list_clients(conn: Connection) -> list[Client]:
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM oauth_client ORDER BY created_at"))
    return [_client(r) for r in rows]


def revoke_client(conn: Connection, client_id: str) -> bool:
    """Revoke a client; False when there is no such active client."""
    result = conn.execute(
        text(
            "UPDATE oauth_client SET revoked_at = now() "
            "WHERE client_id = :id AND revoked_at IS NULL"
        ),
        {"id": client_id},
    )
    return result.rowcount == 1
