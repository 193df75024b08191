"""FastAPI dependencies: the caller's :class:`Principal`, and scope requirements.

Use on a route::

    from hub.auth.deps import PrincipalDep, require_scope

    @router.get("/v1/incidents")
    def list_incidents(principal: Annotated[Principal, Depends(require_scope("incidents:read"))]):
        ...

A missing or bad token answers 401 with ``WWW-Authenticate: Bearer ...`` (RFC 6750 3) and a
problem+json body; a token without the scope answers 403 (``insufficient_scope``). The
principal is also left on ``request.state.principal`` for the audit log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes

from hub.access.principal import SCOPES, Principal
from hub.auth.tokens import InvalidToken, NoRole, TokenVerifier

REALM = "hub"
log = logging.getLogger("hub.auth")

SCOPE_DESCRIPTIONS = {
    "events:write": "report events for the client's own community",
    "incidents:read": "read incidents within the principal's reach",
    "incidents:verify": "verify or refute incidents",
    "risk:read": "read risk per grid cell",
    "resources:read": "read communities' stock and needs, and their matches",
    "resources:write": "publish supplies and volunteers",
    "subscriptions:write": "manage the principal's own webhook subscriptions",
    "admin": "register communities, grids and clients",
}

# Documents the scheme in OpenAPI (client credentials at /oauth/token, the scopes); reading
# the header is left to get_principal, so that the errors are the hub's problem documents.
oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/oauth/token", scopes=SCOPE_DESCRIPTIONS
        )
    ),
    scheme_name="OAuth2",
    description="Client credentials at /oauth/token, or a person's token from a trusted "
    "OpenID Connect issuer; send it as `Authorization: Bearer <token>`.",
    auto_error=False,
)


def get_token_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def _quoted(value: str) -> str:
    # RFC 6750 3: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
    return "".join(c for c in value if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:200]


def _unauthorized(error: str | None, description: str) -> HTTPException:
    challenge = f'Bearer realm="{REALM}"'
    if error is not None:  # no token at all: the challenge names no error (RFC 6750 3.1)
        challenge += f', error="{error}", error_description="{_quoted(description)}"'
    return HTTPException(401, description, headers={"WWW-Authenticate": challenge})


def _forbidden(description: str, scopes: list[str]) -> HTTPException:
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
    if scopes:
        challenge += f', scope="{" ".join(scopes)}"'
    return HTTPException(403, description, headers={"WWW-Authenticate": challenge})


def _rate_limited(request: Request, principal: Principal) -> None:
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    wait_s: float = limiter.take(principal.subject)
    if wait_s > 0:
        retry_after = str(max(1, math.ceil(wait_s)))
        raise HTTPException(
            429,
            f"rate limit of this client exceeded; retry in {retry_after} s",
            headers={"Retry-After": retry_after},
        )


def _benchmark_principal(request: Request) -> Principal:
    # api_auth_disabled (benchmarks on loopback only, enforced by Settings): everyone is admin.
    return Principal(
        subject="auth-disabled",
        kind="admin",
        scopes=frozenset(SCOPES),
        issuer=request.app.state.settings.token_issuer,
    )


def get_principal(
    request: Request,
    security_scopes: SecurityScopes,
    authorization: Annotated[str | None, Depends(oauth2_scheme)],
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
) -> Principal:
    """The verified caller; every scope the route (and its dependencies) require is checked,
    then the client's rate limit (429 with Retry-After)."""
    if request.app.state.settings.api_auth_disabled:
        principal = _benchmark_principal(request)
        _rate_limited(request, principal)
        request.state.principal = principal
        return principal
    if not authorization:
        raise _unauthorized(None, "a bearer token is required")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("invalid_request", "expected Authorization: Bearer <token>")
    try:
        principal = verifier.verify(token)
    except NoRole as exc:
        raise _forbidden(str(exc), []) from None
    except InvalidToken as exc:
        # The reason and the path, never the token (a bearer secret when it is a real one).
        log.info("token refused", extra={"reason": str(exc), "path": request.url.path})
        raise _unauthorized("invalid_token", str(exc)) from None
    missing = [s for s in security_scopes.scopes if not principal.has(s)]
    if missing:
        raise _forbidden(f"the token lacks the scope {' '.join(missing)}", security_scopes.scopes)
    request.state.principal = principal
    _rate_limited(request, principal)
    return principal


PrincipalDep = Annotated[Principal, Security(get_principal)]


def require_scope(*scopes: str) -> Callable[..., Principal]:
    """A dependency returning the principal when its token holds every one of ``scopes``."""
    required = list(scopes)

    # A default rather than an Annotated hint: the hint would be a string (postponed
    # annotations) naming a closure variable, which FastAPI cannot resolve.
    def dependency(principal: Principal = Security(get_principal, scopes=required)) -> Principal:
        return principal

    return dependency
