"""The principal: the authenticated caller, as the access policy sees it.

Built from a verified access token (a machine client of the hub's own authorization server, or
a person signed in at a trusted OpenID Connect issuer), never from anything the caller asserts
without a signature. The kinds and scopes are configuration (``hub.settings`` owns them, so
that settings stay a leaf); they are taken from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.settings import DEFAULT_SCOPES, KINDS, SCOPES, Kind, Scope

__all__ = ["DEFAULT_SCOPES", "KINDS", "SCOPES", "Kind", "Principal", "Scope"]


@dataclass(frozen=True)
class Principal:
    subject: str  # the token's ``sub``: a client id, or a person at an external issuer
    kind: Kind
    scopes: frozenset[str]
    issuer: str
    client_id: str | None = None
    community_id: str | None = None  # kind == "community": its own community
    jurisdiction_wkb: bytes | None = None  # kind == "department": WGS84 (multi)polygon, WKB
    categories: frozenset[str] | None = None  # department limited to these CAP categories
    person: bool = False  # signed in through an OpenID Connect provider

    def has(self, scope: str) -> bool:
        return scope in self.scopes
