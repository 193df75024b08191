"""``/oauth/token`` and the ``/.well-known`` documents of the hub's authorization server.

The token endpoint is the one place whose errors follow RFC 6749 5.2 (``{"error": ...}``
JSON, 400/401) rather than problem+json: OAuth clients expect exactly that.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub.api.deps import SettingsDep
from hub.api.errors import problem_responses
from hub.auth import keys, server
from hub.auth.server import HubAuthorizationServer
from hub.store.db import api_engine

router = APIRouter(tags=["oauth"])

MAX_FORM_BYTES = 16 * 1024  # a client assertion is the largest field: well under 2 KiB
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenResponse(BaseModel):
    access_token: str = Field(description="RFC 9068 JWT access token (typ at+jwt, ES256)")
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds until the token expires")
    scope: str = Field(description="the granted scopes, space-separated")


class OAuthError(BaseModel):
    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = None
    error_uri: str | None = None


class JWKSet(BaseModel):
    keys: list[dict[str, Any]] = Field(description="public signing keys (RFC 7517)")


class ServerMetadata(BaseModel):
    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]


_TOKEN_REQUEST_BODY = {
    "required": True,
    "content": {
        FORM: {
            "schema": {
                "type": "object",
                "required": ["grant_type"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                    "scope": {"type": "string", "description": "space-separated; default all"},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string", "description": "client_secret_post"},
                    "client_assertion_type": {
                        "type": "string",
                        "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                    },
                    "client_assertion": {"type": "string", "description": "private_key_jwt"},
                },
            }
        }
    },
}

_OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "model": OAuthError,
        "content": {"application/json": {}},
    }
    for status, description in [
        (400, "RFC 6749 5.2 error (invalid_request, invalid_scope, unsupported_grant_type, ...)"),
        (401, "invalid_client: client authentication failed"),
        (413, "invalid_request: the form is too large"),
    ]
}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=NO_STORE)


async def _read_form(request: Request) -> dict[str, str] | JSONResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        return _oauth_error(400, "invalid_request", f"the body must be {FORM}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _oauth_error(413, "invalid_request", "the form is too large")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "the form cannot be parsed")
    form = dict(fields)
    if len(form) != len(fields):  # RFC 6749 3.2: parameters MUST NOT be repeated
        return _oauth_error(400, "invalid_request", "a parameter is repeated")
    return form


@router.post(
    "/oauth/token",
    name="issue_token",
    summary="An access token for a client (client_credentials grant)",
    description="Client authentication: HTTP Basic (`client_secret_basic`), form fields "
    "(`client_secret_post`) or a signed assertion (`private_key_jwt`, RFC 7523). Tokens are "
    "RFC 9068 JWTs for the audience `hub`; errors follow RFC 6749 5.2, not problem+json.",
    response_model=TokenResponse,
    responses=_OAUTH_ERRORS,
    openapi_extra={"requestBody": _TOKEN_REQUEST_BODY},
)
async def issue_token(request: Request) -> JSONResponse:
    form = await _read_form(request)
    if isinstance(form, JSONResponse):
        return form
    authorization_server: HubAuthorizationServer = request.app.state.authorization_server
    # authlib and the registry are synchronous (database, scrypt): keep them off the loop.
    status, body, headers = await run_in_threadpool(
        authorization_server.token_response, form, request.headers
    )
    return JSONResponse(body, status_code=status, headers=dict(headers))


@router.get(
    server.JWKS_PATH,
    name="jwks",
    summary="The public keys that verify the hub's access tokens (JWK Set)",
    response_model=JWKSet,
    responses=problem_responses(500),
)
def jwks(settings: SettingsDep) -> JSONResponse:
    with api_engine(settings, "authenticate").begin() as conn:
        document = keys.jwks(conn, settings)
    # Short caching: after `hub keys rotate` a verifier sees the new key within a minute (and
    # re-fetches at once on an unknown kid anyway).
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})


@router.get(
    "/.well-known/oauth-authorization-server",
    name="authorization_server_metadata",
    summary="Authorization server metadata (RFC 8414)",
    response_model=ServerMetadata,
)
def authorization_server_metadata(settings: SettingsDep) -> JSONResponse:
    return JSONResponse(server.metadata(settings), headers={"Cache-Control": "public, max-age=300"})
