"""The principal: the authenticated caller, as the access policy sees it.

Built from a verified access token (a machine client of the hub's own authorization server, or
a person signed in at a trusted OpenID Connect issuer), never from anything the caller asserts
without a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["community", "department", "analyst", "admin"]
KINDS: tuple[str, ...] = get_args(Kind)

Scope = Literal[
    "events:write",
    "incidents:read",
    "incidents:verify",
    "risk:read",
    "resources:read",
    "resources:write",
    "admin",
]
SCOPES: tuple[str, ...] = get_args(Scope)

# resources:read for every kind: mutual aid is shared. A community must see its neighbours'
# surplus to ask for it, a department the stock and needs of the communities it serves, an
# analyst the whole region's; what each sees of them is the row policy's business.
DEFAULT_SCOPES: dict[str, frozenset[str]] = {
    "community": frozenset(SCOPES) - {"admin"},
    "department": frozenset({"incidents:read", "risk:read", "incidents:verify", "resources:read"}),
    "analyst": frozenset({"incidents:read", "risk:read", "resources:read"}),
    "admin": frozenset(SCOPES),
}


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

    @property
    def sees_reporters(self) -> bool:
        """Reporter identities: only a community's own and a department's (not analysts')."""
        return self.kind in ("community", "department", "admin")
