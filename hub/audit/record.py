"""What an audit row says about a request, read from its ASGI scope (no I/O).

The views and the auth dependency report through ``request.state`` (the ``scope["state"]``
dict): ``principal`` (a :class:`~hub.access.principal.Principal`, set once the token checked out)
and ``audit_rows`` (how many rows the view returned or wrote).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

from hub.access.principal import Principal
from hub.audit.chain import MILLI, AuditRecord

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

AUDITED_PREFIXES = ("/v1", "/ogc")


def audited(path: str) -> bool:
    """/v1 and /ogc, and nothing else: probes, metrics, /.well-known, /oauth and docs are
    public and high-volume; auditing them would bury the accesses that matter."""
    return any(path == p or path.startswith(p + "/") for p in AUDITED_PREFIXES)


def clean(value: str) -> str:
    # PostgreSQL text and jsonb refuse NUL; a %00 in a URL must not make the audit write fail.
    return value.replace("\x00", "\ufffd")


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def in_networks(addr: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The peer address; X-Forwarded-For counts only when the peer is a trusted proxy.

    Walks the header from the right (the hop our proxy appended) while the hops are trusted
    proxies themselves; anything left of the first untrusted hop was written by the client and
    could be forged, so it is never used.
    """
    peer = scope.get("client")
    addr: str | None = clean(str(peer[0])) if peer else None
    if not trusted or addr is None or not in_networks(addr, trusted):
        return addr
    forwarded = [
        v.decode("latin-1")
        for k, v in scope.get("headers", ())
        if k == b"x-forwarded-for"  # ASGI header names are lower-case
    ]
    hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: stop at the last address a trusted proxy vouched for
        addr = hop
        if not in_networks(hop, trusted):
            break
    return addr


def request_params(scope: Scope) -> dict[str, Any]:
    """Path and query parameters; a repeated query parameter keeps all its values, in order."""
    query: dict[str, Any] = {}
    raw = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(raw, keep_blank_values=True):
        k, v = clean(key), clean(value)
        if k in query:
            previous = query[k]
            query[k] = [*previous, v] if isinstance(previous, list) else [previous, v]
        else:
            query[k] = v
    path = {clean(str(k)): clean(str(v)) for k, v in scope.get("path_params", {}).items()}
    return {"path": path, "query": query}


def build_record(
    scope: Scope,
    *,
    at: datetime,
    status: int,
    duration_s: float,
    trusted: tuple[Network, ...] = (),
) -> AuditRecord:
    state: dict[str, Any] = scope.get("state") or {}
    principal = state.get("principal")
    who = principal if isinstance(principal, Principal) else None
    rows = state.get("audit_rows")
    route = scope.get("route")
    endpoint = getattr(route, "path", None)  # the router sets scope["route"] on a match
    return AuditRecord(
        at=at,
        method=clean(scope["method"]),
        endpoint=clean(endpoint) if isinstance(endpoint, str) else None,
        path=clean(scope["path"]),
        params=request_params(scope),
        status=status,
        rows=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        duration_ms=Decimal(duration_s * 1000).quantize(MILLI),
        client_addr=client_address(scope, trusted),
        subject=clean(who.subject) if who else None,
        principal_kind=who.kind if who else None,
        client_id=clean(who.client_id) if who and who.client_id else None,
        issuer=clean(who.issuer) if who else None,
    )
