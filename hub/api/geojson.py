"""GeoJSON (RFC 7946) output helpers: the response class, links, and fast serialisation.

Geometries come out of PostGIS as GeoJSON text (``ST_AsGeoJSON``); they are spliced into the
output with ``orjson.Fragment`` instead of being decoded and re-encoded, which is most of the cost
of a 10,000-feature page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

# dumps and fragment live below the API (the stream and the webhooks share them); re-exported
from hub.access.features import dumps as dumps
from hub.access.features import fragment as fragment
from hub.settings import Settings

GEOJSON_MEDIA_TYPE = "application/geo+json"
JSON_MEDIA_TYPE = "application/json"


class JSONBytesResponse(JSONResponse):
    """A response whose content is already-encoded JSON bytes or a JSON-able object (encoded
    by :func:`dumps`). A JSONResponse subclass, so that FastAPI documents the route's response
    model (for other response classes it writes ``type: string``)."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else dumps(content)


class GeoJSONResponse(JSONBytesResponse):
    media_type = GEOJSON_MEDIA_TYPE


class Link(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rel": "next",
                    "href": "http://127.0.0.1:8000/v1/events?limit=100&cursor=MTIz",
                    "type": GEOJSON_MEDIA_TYPE,
                }
            ]
        }
    )

    rel: str = Field(description="relation: self, next, collection")
    href: str = Field(description="absolute URL")
    type: str | None = Field(None, description="media type of the target")


class FeatureBase(BaseModel):
    type: Literal["Feature"]


class FeatureCollectionBase(BaseModel):
    type: Literal["FeatureCollection"]
    links: list[Link] = Field(default_factory=list)


def base_url(request: Request, settings: Settings) -> str:
    """Where the API is reachable from outside: ``public_url`` when set (behind a proxy)."""
    return (settings.public_url or str(request.base_url)).rstrip("/")


def absolute_url(
    request: Request,
    settings: Settings,
    path: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> str:
    """An absolute URL; query values are percent-encoded (spaces as %20, ``/`` as %2F)."""
    query = urlencode(
        list(params.items() if isinstance(params, Mapping) else params), quote_via=quote, safe=""
    )
    return f"{base_url(request, settings)}{path}" + (f"?{query}" if query else "")


def link(rel: str, href: str, media_type: str = GEOJSON_MEDIA_TYPE) -> dict[str, str]:
    return {"rel": rel, "href": href, "type": media_type}


def feature_item(
    request: Request,
    settings: Settings,
    feature: dict[str, Any],
    collection: str,
    route: str,
    **path_params: str,
) -> GeoJSONResponse:
    """One Feature with its ``self`` link (``route`` at ``path_params``) and a link to the
    ``collection`` it belongs to."""
    app = request.app
    here = app.url_path_for(route, **path_params)
    feature["links"] = [
        link("self", absolute_url(request, settings, here)),
        link("collection", absolute_url(request, settings, app.url_path_for(collection))),
    ]
    return GeoJSONResponse(dumps(feature))


def page_links(
    request: Request,
    settings: Settings,
    route: str,
    at: str | None,
    following: str | None,
    *,
    key: str = "cursor",
    media_type: str = GEOJSON_MEDIA_TYPE,
) -> list[dict[str, str]]:
    """The links of a page of ``route``: ``self`` (at ``at``, the position the request named
    in its ``key`` parameter) and, when more rows exist, ``next`` (at ``following``). Both keep
    every other parameter of the request, so paging keeps the filters."""
    path = request.app.url_path_for(route)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != key]

    def href(position: str | None) -> str:
        params = kept + ([(key, position)] if position is not None else [])
        return absolute_url(request, settings, path, params)

    links = [link("self", href(at), media_type)]
    if following is not None:
        links.append(link("next", href(following), media_type))
    return links


def feature_page(
    request: Request,
    settings: Settings,
    route: str,
    features: list[dict[str, Any]],
    cursor: str | None,
    next_cursor: str | None,
) -> GeoJSONResponse:
    """A FeatureCollection page with its ``self`` link and, when more rows exist
    (``next_cursor``), a ``next`` link that keeps every filter of the request."""
    request.state.audit_rows = len(features)  # for the audit log
    body = {
        "type": "FeatureCollection",
        "features": features,
        "links": page_links(request, settings, route, cursor, next_cursor),
        "numberReturned": len(features),
    }
    return GeoJSONResponse(dumps(body))
