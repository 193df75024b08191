"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Handlers are registered by :func:`add_exception_handlers`; endpoints raise :class:`ApiError`
subclasses (or FastAPI's ``HTTPException``) and never build error responses themselves.
:data:`STATUS` is the one map from an error (a :class:`~hub.errors.HubError`) to its status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from hub import errors
from hub.errors import HubError
from hub.i18n import negotiate, translate

log = logging.getLogger("hub.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Bad Request",
                    "status": 400,
                    "detail": "limit: Input should be less than or equal to 10000",
                    "instance": "/v1/events",
                }
            ]
        },
    )

    type: str = Field("about:blank", description="URI reference identifying the problem type")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(description="the HTTP status code")
    detail: str | None = Field(None, description="explanation specific to this occurrence")
    instance: str | None = Field(None, description="the request path that failed")


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


#: The one map from error to HTTP status: an error answers with the status of the first of its
#: classes (in method resolution order) listed here, its message as the problem ``detail``.
#: A HubError of another kind is the server's own fault: a 500, its message left in the log.
STATUS: dict[type[HubError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.NotAllowed: 403,
    errors.NotFound: 404,
    errors.NotAcceptable: 406,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Unavailable: 503,
}


def status_of(exc: HubError) -> int | None:
    """The HTTP status of an error (:data:`STATUS`); None when it is the server's fault."""
    return next((STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS), None)


class ApiError(HubError):
    """An error an endpoint raises for the caller; its message becomes the problem ``detail``,
    its kind (:data:`STATUS`) the status: 500 for none."""

    @property
    def status_code(self) -> int:
        return status_of(self) or 500


class BadRequest(ApiError, errors.InvalidInput):
    pass


class Forbidden(ApiError, errors.NotAllowed):
    pass


class NotFound(ApiError, errors.NotFound):
    pass


class NotAcceptable(ApiError, errors.NotAcceptable):
    pass


class Conflict(ApiError, errors.Conflict):
    pass


def problem(
    request: Request,
    status: int,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    # type about:blank: the title is the status phrase (RFC 9457 4.2.1), in the language the
    # caller asks for (RFC 9457 3.1.3 allows titles to differ by proactive negotiation).
    language = negotiate(request.headers.get("accept-language"))
    title = translate(language, f"status.{status}")
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase if title == f"status.{status}" else title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    localised = {"Content-Language": language, "Vary": "Accept-Language"}
    return ProblemResponse(body, status_code=status, headers={**localised, **(headers or {})})


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    # loc is ("query", "limit") or ("path", "event_id"): name the parameter, not the plumbing.
    errors = [
        {
            "in": str(err["loc"][0]) if err.get("loc") else "request",
            "parameter": ".".join(str(p) for p in err.get("loc", ())[1:]),
            "message": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter'] or e['in']}: {e['message']}" for e in errors)
    return detail, errors


async def _on_hub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)  # ApiError, or a kind of STATUS: add_exception_handlers
    return problem(request, status_of(exc) or 500, str(exc) or None)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    # FastAPI answers 422 by default; bad parameters are a plain 400 Bad Request here.
    assert isinstance(exc, RequestValidationError)
    detail, errors = _validation_detail(exc)
    return problem(request, 400, detail, errors=errors)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail: str | None = str(exc.detail)
    if detail == HTTPStatus(exc.status_code).phrase:  # Starlette's default says nothing new
        detail = _default_details.get(exc.status_code, "{method} {path}").format(
            method=request.method, path=request.url.path
        )
    return problem(request, exc.status_code, detail, headers=exc.headers)


_default_details = {
    404: "nothing at {path}",
    405: "{method} is not allowed on {path}",
}


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Log the traceback; never leak internals into the response.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "internal error; see the server log")


def add_exception_handlers(app: FastAPI) -> None:
    # Only the kinds with a status, and the API's own errors: any other error (a HubError the
    # table does not list included) is unexpected, logged with its traceback by the last one.
    kinds: list[type[HubError]] = [ApiError, *STATUS]
    for kind in kinds:
        app.add_exception_handler(kind, _on_hub_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses (schema ``Problem``)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
