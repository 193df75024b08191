"""The hub's token signing keys: ES256 (P-256) key pairs in the database, JWKS, rotation.

One key signs at a time (a partial unique index enforces it). ``rotate`` retires the active key
and creates a new one in one transaction; a retired key stays in the JWKS and keeps verifying
for one token lifetime after its retirement, so tokens signed just before a rotation stay valid
until they expire, and not a second longer.

Private keys live only in the database, sealed with AES-256-GCM when
``HUB_SIGNING_KEY_SECRET`` is set. Production should keep them in a KMS/HSM instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey
from sqlalchemy import Connection, text

from hub.errors import ConfigError
from hub.settings import Settings

ALG = "ES256"
_SEALED = "aes256gcm:"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None


class SigningKeyError(ConfigError):
    """A signing key cannot be used (e.g. it is sealed with another secret)."""


def _aead(settings: Settings) -> AESGCM | None:
    secret = settings.signing_key_secret
    if secret is None:
        return None
    # A fixed-length key from a secret of any length; the secret is expected to be random.
    return AESGCM(hashlib.sha256(secret.get_secret_value().encode()).digest())


def _seal(settings: Settings, kid: str, private_jwk: dict[str, Any]) -> str:
    plain = json.dumps(private_jwk).encode()
    aead = _aead(settings)
    if aead is None:
        return plain.decode()
    nonce = os.urandom(12)
    # The kid as associated data: a sealed key cannot be swapped into another row.
    sealed = nonce + aead.encrypt(nonce, plain, kid.encode())
    return _SEALED + base64.b64encode(sealed).decode()


def _unseal(settings: Settings, kid: str, stored: str) -> dict[str, Any]:
    if not stored.startswith(_SEALED):
        data: dict[str, Any] = json.loads(stored)
        return data
    aead = _aead(settings)
    if aead is None:
        raise SigningKeyError(f"signing key {kid} is sealed: set HUB_SIGNING_KEY_SECRET")
    raw = base64.b64decode(stored[len(_SEALED) :])
    try:
        plain = aead.decrypt(raw[:12], raw[12:], kid.encode())
    except Exception:  # InvalidTag: another secret (or a tampered row)
        raise SigningKeyError(f"signing key {kid} cannot be unsealed with this secret") from None
    data = json.loads(plain)
    return data


def _public(key: ECKey, kid: str) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": kid, "alg": ALG, "use": "sig"}


def _insert_new_key(conn: Connection, settings: Settings) -> str:
    key = ECKey.generate_key("P-256", private=True)
    kid = key.thumbprint()  # RFC 7638: stable, and says nothing but the public key
    conn.execute(
        text(
            "INSERT INTO signing_key (kid, alg, private_jwk, public_jwk) "
            "VALUES (:kid, :alg, :private, CAST(:public AS jsonb)) ON CONFLICT DO NOTHING"
        ),
        {
            "kid": kid,
            "alg": ALG,
            "private": _seal(settings, kid, key.as_dict(private=True)),
            "public": json.dumps(_public(key, kid)),
        },
    )
    return kid


def active_key(conn: Connection, settings: Settings) -> tuple[str, ECKey]:
    """The key that signs now (kid, private key); the first one is created on first use."""
    sql = text("SELECT kid, private_jwk FROM signing_key WHERE retired_at IS NULL")
    row = conn.execute(sql).first()
    if row is None:
        # Two processes may race here: the unique index lets one insert win, both read it.
        _insert_new_key(conn, settings)
        row = conn.execute(sql).one()
    key = ECKey.import_key(_unseal(settings, row.kid, row.private_jwk))
    return row.kid, key


def rotate(conn: Connection, settings: Settings) -> str:
    """Retire the active key and create a new one; returns the new kid."""
    # Serialise concurrent rotations; the unique index would refuse the loser anyway.
    conn.execute(text("LOCK TABLE signing_key IN SHARE ROW EXCLUSIVE MODE"))
    conn.execute(text("UPDATE signing_key SET retired_at = now() WHERE retired_at IS NULL"))
    return _insert_new_key(conn, settings)


def verification_keys(conn: Connection, settings: Settings) -> list[SigningKey]:
    """Keys whose tokens may still be valid: the active one and those retired within a TTL."""
    rows = conn.execute(
        text(
            "SELECT kid, alg, public_jwk, created_at, retired_at FROM signing_key "
            "WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => :ttl) "
            "ORDER BY created_at DESC"
        ),
        {"ttl": settings.token_ttl_s},
    )
    return [SigningKey(r.kid, r.alg, r.public_jwk, r.created_at, r.retired_at) for r in rows]


def grace_end(key: SigningKey, settings: Settings) -> datetime | None:
    """When a retired key stops verifying (None: it is the active key)."""
    if key.retired_at is None:
        return None
    return key.retired_at + timedelta(seconds=settings.token_ttl_s)


def jwks(conn: Connection, settings: Settings) -> dict[str, Any]:
    """The public JWK Set (RFC 7517) of every key that may still verify a token."""
    keys = verification_keys(conn, settings)
    if not keys:
        active_key(conn, settings)  # never publish an empty set
        keys = verification_keys(conn, settings)
    return {"keys": [k.public_jwk for k in keys]}


def list_keys(conn: Connection) -> list[SigningKey]:
    rows = conn.execute(
        text(
            "SELECT kid, alg, public_jwk, created_at, retired_at FROM signing_key "
            "ORDER BY created_at DESC"
        )
    )
    return [SigningKey(r.kid, r.alg, r.public_jwk, r.created_at, r.retired_at) for r in rows]
