"""The query parameters the collection routes share, declared once: the area (``bbox``), RFC 3339
times (``since``, ``until``), the picture (``status``), the free-text filters, and paging
(``limit``, ``cursor``); with the parsers that turn their text into values, a bad one into a 400.

Parameters stay plain strings in the OpenAPI document and are parsed here rather than by
pydantic, so a bad value answers a problem+json 400 that says what was expected.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from hub.api.errors import BadRequest
from hub.store.queries import BBox
from schemas.event import Status

# PostgreSQL text cannot hold NUL: refused as a bad parameter, not sent to become a 500.
NO_NUL = r"^[^\x00]*$"
DEFAULT_LIMIT = 100


def text_param(description: str) -> Any:
    """A free-text filter: 1 to 200 characters, no NUL."""
    return Query(description=description, min_length=1, max_length=200, pattern=NO_NUL)


# --- declarations -----------------------------------------------------------------------------

BBoxParam = Annotated[
    str | None,
    Query(
        description="minLon,minLat,maxLon,maxLat (WGS84); the features whose geometry "
        "intersects it",
        examples=["-122.42,37.77,-122.40,37.79"],
    ),
]
StatusParam = Annotated[
    Status, Query(description="the picture: actual, or the drills (exercise, test) when asked")
]
CommunityParam = Annotated[str | None, text_param("community id, exact; URL-encoded")]
CategoryParam = Annotated[str | None, text_param("CAP category, e.g. Fire")]
EventTypeParam = Annotated[str | None, text_param("e.g. fire")]


def since_param(field: str, *, example: bool = True) -> Any:
    """``since``: the rows whose ``field`` is at or after it."""
    return Query(
        description=f"{field} >= since; RFC 3339 with an offset",
        examples=["2018-12-01T00:00:00-08:00"] if example else None,
    )


def until_param(field: str) -> Any:
    """``until``: the rows whose ``field`` is before it."""
    return Query(
        description=f"{field} < until (exclusive); RFC 3339 with an offset",
        examples=["2018-12-02T00:00:00Z"],
    )


def limit_param(max_limit: int) -> Any:
    """``limit``: the page size, at most ``max_limit``; a default, so it needs no hint."""
    return Query(DEFAULT_LIMIT, ge=1, le=max_limit, description="page size")


# --- parsing ----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def parse_rfc3339(name: str, value: str) -> datetime:
    """An RFC 3339 timestamp with an explicit offset; anything else is a 400."""
    if not _RFC3339.fullmatch(value):
        hint = ""
        if re.search(r"\d \d{2}:\d{2}$", value):  # an unencoded '+' arrives as a space
            hint = " (a '+' in a URL must be encoded as %2B)"
        raise BadRequest(
            f"{name}: {value!r} is not an RFC 3339 timestamp with an offset, "
            f"e.g. 2018-12-01T08:00:00Z or 2018-12-01T00:00:00-08:00{hint}"
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:  # well-formed but impossible, e.g. month 13
        raise BadRequest(f"{name}: {value!r} is not a valid date-time ({exc})") from exc


def optional_instant(name: str, value: str | None) -> datetime | None:
    """The optional time parameter ``name``, parsed; None when absent."""
    return parse_rfc3339(name, value) if value is not None else None


def parse_bbox(value: str) -> BBox:
    parts = value.split(",")
    if len(parts) != 4:
        raise BadRequest(f"bbox: expected 4 numbers minLon,minLat,maxLon,maxLat, got {len(parts)}")
    try:
        nums = [float(p) for p in parts]
    except ValueError as exc:
        raise BadRequest(f"bbox: {value!r} holds a value that is not a number") from exc
    if not all(math.isfinite(n) for n in nums):
        raise BadRequest("bbox: values must be finite numbers")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise BadRequest("bbox: longitudes must be within [-180, 180]")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise BadRequest("bbox: latitudes must be within [-90, 90]")
    if min_lon > max_lon or min_lat > max_lat:
        raise BadRequest(
            "bbox: minimum greater than maximum (boxes across the antimeridian are not supported)"
        )
    return BBox(min_lon, min_lat, max_lon, max_lat)


def optional_bbox(value: str | None) -> BBox | None:
    """The optional ``bbox`` parameter, parsed; None when absent."""
    return parse_bbox(value) if value is not None else None


# --- paging -----------------------------------------------------------------------------------


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The ``seq`` after which the next page starts; a cursor we did not issue is a 400."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("cursor: malformed; use the href of a 'next' link as it is") from exc
    match = re.fullmatch(rb"s(\d{1,18})", raw)
    if match is None:
        raise BadRequest("cursor: malformed; use the href of a 'next' link as it is")
    return int(match.group(1))


@dataclass(frozen=True)
class Page:
    """A collection's ``limit`` and ``cursor`` parameters, the cursor decoded (``after``)."""

    limit: int
    cursor: str | None  # as sent: the self link repeats it
    after: int | None


def paging(max_limit: int) -> Callable[..., Page]:
    """The dependency of a collection route paged by cursor, pages of at most ``max_limit``."""

    # Defaults rather than Annotated hints: a hint naming ``max_limit`` would be a string
    # (postponed annotations) that FastAPI cannot resolve in this closure.
    def page(
        limit: int = limit_param(max_limit),
        cursor: str | None = Query(None, description="opaque; from a next link"),
    ) -> Page:
        return Page(limit, cursor, decode_cursor(cursor) if cursor is not None else None)

    return page
