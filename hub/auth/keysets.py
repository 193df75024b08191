"""Where the keys that verify access tokens come from: the hub's own (the ``signing_key``
table, cached, re-read for an unknown kid at most once a second) and a trusted issuer's JWKS
(fetched from its configured URL, never from a token). Only keys on the allow-list (P-256 for
ES256, Ed25519 for EdDSA) are ever kept."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey
from sqlalchemy import Engine

from hub.auth import keys
from hub.settings import Settings

log = logging.getLogger("hub.auth")


@dataclass(frozen=True)
class CachedKey:
    key: Key
    alg: str
    grace_end: datetime | None  # a retired key of the hub: stops verifying then


def public_key(jwk: Any, grace_end: datetime | None = None) -> CachedKey | None:
    """A public signing key from a JWK, or None for one the hub would never accept."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or "d" in jwk:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return CachedKey(ECKey.import_key(jwk), "ES256", grace_end)
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            return CachedKey(OKPKey.import_key(jwk), "EdDSA", grace_end)
    except (JoseError, ValueError, TypeError):
        return None
    return None  # RSA, HMAC, other curves: not on the allow-list


class LocalKeys:
    """The hub's verification keys, read from the database and cached.

    An unknown kid triggers a re-read (a key rotated in by another process), at most once per
    ``min_refresh_s`` so that tokens with random kids cannot hammer the database.
    """

    def __init__(
        self, engine: Engine, settings: Settings, max_age_s: float = 60, min_refresh_s: float = 1
    ) -> None:
        self._engine, self._settings = engine, settings
        self.max_age_s, self.min_refresh_s = max_age_s, min_refresh_s
        self._keys: dict[str, CachedKey] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        with self._engine.connect() as conn:
            rows = keys.verification_keys(conn, self._settings)
        found = {k.kid: public_key(k.public_jwk, keys.grace_end(k, self._settings)) for k in rows}
        self._keys = {kid: entry for kid, entry in found.items() if entry is not None}
        self._fetched = time.monotonic()

    def get(self, kid: str) -> CachedKey | None:
        with self._lock:
            age = time.monotonic() - self._fetched
            if age > self.max_age_s or (kid not in self._keys and age > self.min_refresh_s):
                self._refresh()
            entry = self._keys.get(kid)
        if (
            entry is not None
            and entry.grace_end is not None
            and datetime.now(UTC) > entry.grace_end
        ):
            return None  # retired more than one token lifetime ago
        return entry


def is_secure_url(url: str) -> bool:
    """https, or http to a loopback address (test issuers, a sidecar)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class RemoteKeys:
    """A trusted issuer's JWKS, fetched from its configured URL with a timeout, and cached."""

    MAX_BYTES = 512 * 1024

    def __init__(
        self, url: str, timeout_s: float, max_age_s: float = 300, min_refresh_s: float = 10
    ) -> None:
        if not is_secure_url(url):
            raise ValueError(f"JWKS URL must be https (or http on loopback): {url}")
        self.url, self.timeout_s = url, timeout_s
        self.max_age_s, self.min_refresh_s = max_age_s, min_refresh_s
        self._keys: dict[str, CachedKey] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> dict[str, CachedKey]:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = response.read(self.MAX_BYTES + 1)
        if len(body) > self.MAX_BYTES:
            raise ValueError("JWKS too large")
        found: dict[str, CachedKey] = {}
        for jwk in json.loads(body).get("keys", []):
            cached = public_key(jwk)
            if cached is not None:
                found[jwk["kid"]] = cached
        return found

    def get(self, kid: str) -> CachedKey | None:
        with self._lock:  # one fetch at a time; the others wait for its result
            age = time.monotonic() - self._fetched
            if age > self.max_age_s or (kid not in self._keys and age > self.min_refresh_s):
                try:
                    self._keys = self._fetch()
                except (OSError, ValueError, AttributeError) as exc:
                    # Keep the keys we had: an unreachable issuer must not log everyone out.
                    log.warning("cannot fetch JWKS %s: %s", self.url, exc)
                self._fetched = time.monotonic()
            return self._keys.get(kid)
