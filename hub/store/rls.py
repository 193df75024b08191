"""Set the principal for row-level security, per transaction (``set_config(..., true)``)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from hub.auth.principal import Principal

API_ROLE = "hub_api"  # the database role the API connects as (see migration 0002_rls)

_SET = text(
    "SELECT set_config('hub.principal_kind', :kind, true),"
    " set_config('hub.subject', :subject, true),"
    " set_config('hub.community_id', :community, true),"
    " set_config('hub.jurisdiction', :jurisdiction, true),"
    " set_config('hub.categories', :categories, true),"
    " set_config('hub.neighbour_zone', :zone, true)"
)


def set_principal(session: Session, principal: Principal, zone_wkb: bytes | None = None) -> None:
    """Make ``principal`` the one the row-level policies see until the transaction ends."""
    session.execute(
        _SET,
        {
            "kind": principal.kind,
            "subject": principal.subject,
            "community": principal.community_id or "",
            "jurisdiction": (principal.jurisdiction_wkb or b"").hex(),
            "categories": ",".join(sorted(principal.categories or ())),
            "zone": (zone_wkb or b"").hex(),
        },
    )
