"""What the list routes share: the decorator of a paged collection route, and one page of rows
after the request's cursor, answered with its ``self`` and ``next`` links.

A list route states only what differs: its path and words, its filters, the store query that
reads a page (``functools.partial`` with everything but the page bound), the sequence its rows
are ordered by, and how a row becomes a feature::

    @list_route(router, "/v1/risk", name="list_risk", ..., model=RiskCollection)
    def list_risk(access: RiskAccess, ..., pages: Listing = Depends(listing(MAX_LIMIT))):
        query = partial(risk_queries.list_risk_cells, access.session, filters, visible=...)
        return pages.features("list_risk", query, by_updated_seq, risk_feature)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.types import DecoratedCallable
from pydantic import BaseModel
from starlette.responses import JSONResponse

from hub.api.deps import SettingsDep
from hub.api.errors import problem_responses
from hub.api.geojson import GEOJSON_MEDIA_TYPE, GeoJSONResponse, feature_page, page_links
from hub.api.params import Page, encode_cursor, paging
from hub.settings import Settings

RowT = TypeVar("RowT")
RowT_co = TypeVar("RowT_co", covariant=True)


class PageQuery(Protocol[RowT_co]):
    """A store query with all but the page bound: up to ``limit`` rows after ``after_seq`` in
    sequence order, and whether more exist."""

    def __call__(self, *, after_seq: int | None, limit: int) -> tuple[Sequence[RowT_co], bool]: ...


def by_updated_seq(row: Any) -> int:
    """The order of the collections whose rows change in place (incidents, cells, balances)."""
    seq: int = row.updated_seq
    return seq


def list_route(
    router: APIRouter,
    path: str,
    *,
    name: str,
    summary: str,
    description: str,
    model: type[BaseModel],
    response_class: type[JSONResponse] = GeoJSONResponse,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``GET path``, a paged collection answering ``model``: a bad parameter or cursor is a
    400, besides the problems of every authenticated route."""
    return router.get(
        path,
        name=name,
        summary=summary,
        description=description,
        response_class=response_class,
        response_model=model,
        responses=problem_responses(400, 401, 403, 429, 500),
    )


@dataclass(frozen=True)
class Listing:
    """One request to a list route: its page (``limit``, ``cursor``), and the request and
    settings the answer's links are made from."""

    request: Request
    settings: Settings
    page: Page

    def fetch(
        self, query: PageQuery[RowT], seq: Callable[[RowT], int]
    ) -> tuple[Sequence[RowT], str | None]:
        """The page's rows, and the cursor of the next page (None on the last page): the
        ``seq`` of its last row."""
        rows, more = query(after_seq=self.page.after, limit=self.page.limit)
        return rows, encode_cursor(seq(rows[-1])) if more else None

    def links(
        self, route: str, next_cursor: str | None, media_type: str = GEOJSON_MEDIA_TYPE
    ) -> list[dict[str, str]]:
        """The page's ``self`` link and, unless it is the last, its ``next`` link."""
        return page_links(
            self.request, self.settings, route, self.page.cursor, next_cursor, media_type=media_type
        )

    def features(
        self,
        route: str,
        query: PageQuery[RowT],
        seq: Callable[[RowT], int],
        feature: Callable[[RowT], dict[str, Any]],
    ) -> GeoJSONResponse:
        """The page as a FeatureCollection of ``route``, a feature per row."""
        rows, next_cursor = self.fetch(query, seq)
        features = [feature(r) for r in rows]
        cursor = self.page.cursor
        return feature_page(self.request, self.settings, route, features, cursor, next_cursor)


def listing(max_limit: int) -> Callable[..., Listing]:
    """The dependency of a list route paged by cursor, pages of at most ``max_limit``."""
    paged = paging(max_limit)

    def dependency(request: Request, settings: SettingsDep, page: Page = Depends(paged)) -> Listing:
        return Listing(request, settings, page)

    return dependency
