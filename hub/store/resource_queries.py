"""The read side of the resources, as ``/v1/resources`` and ``/v1/resources/matches`` need it.

As ``hub.store.queries``: SQLAlchemy Core over the SQLModel tables, every value a bound
parameter, geometries as GeoJSON text for the API to splice in, timestamps in UTC. The caller's
reach (a :class:`~hub.store.reach.RowReach` over ``resource_balance``, compiled by
``hub.access``) goes into every query, on each alias of the table a query reads; it mirrors the
row-level policy ``resource_balance_shared`` (migration 0006), which stays the second wall.

Matching pairs a need with the offers of the same picture, resource type and unit from *other*
communities, nearest first by geodesic distance between the balances' points (``geography``
``ST_Distance``, on the WGS84 spheroid; roads are out of scope), and fills it greedily
(:func:`greedy_cover`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import FromClause, Row, Select, Table, func, select, true
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store.queries import in_utc, page_after
from hub.store.reach import RowReach
from schemas.picture import SHARED_STATUS

BALANCE: Table = SQLModel.metadata.tables["resource_balance"]


@dataclass(frozen=True)
class BalanceFilter:
    """What ``GET /v1/resources`` may filter on; ``None`` means no condition (but ``status``:
    the drill pictures are shown only when asked for)."""

    status: str = SHARED_STATUS
    community: str | None = None
    resource_type: str | None = None
    direction: str | None = None


def _balance_columns(t: FromClause) -> list[Any]:
    c = t.c
    return [
        c.community_id,
        c.status,
        c.resource_type,
        c.unit,
        c.direction,
        c.quantity,
        c.observed_at,
        c.event_id,
        c.updated_seq,
        func.ST_AsGeoJSON(c.geom).label("geometry"),
    ]


def _filtered(t: FromClause, f: BalanceFilter, reach: RowReach) -> Select[Any]:
    query = select(*_balance_columns(t)).where(reach.on(t), t.c.status == f.status)
    for column, value in (
        (t.c.community_id, f.community),
        (t.c.resource_type, f.resource_type),
        (t.c.direction, f.direction),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def list_balances(
    session: Session,
    f: BalanceFilter,
    reach: RowReach,
    *,
    after_seq: int | None,
    limit: int,
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` visible balances in ``updated_seq`` order after ``after_seq``; and
    whether more exist. A balance that changes moves to the end: a client paging sees it
    again, never misses it."""
    query = _filtered(BALANCE, f, reach)
    return page_after(session, query, BALANCE.c.updated_seq, after_seq, limit)


@dataclass(frozen=True)
class MatchFilter:
    """Which needs to match (``None``: every visible need) and how many offers each."""

    status: str = SHARED_STATUS
    community: str | None = None
    resource_type: str | None = None
    per_need: int = 3
    max_distance_m: float | None = None


@dataclass(frozen=True)
class NeedMatches:
    need: Row[Any]
    offers: list[Row[Any]]  # nearest first (then by community id)


def _needs(f: MatchFilter, reach: RowReach, after_seq: int | None, limit: int) -> Any:
    """One page of the visible needs (quantity > 0), with their raw point (``point``)."""
    need = BALANCE.alias("need")
    wanted = BalanceFilter(f.status, f.community, f.resource_type, "needed")
    needs = _filtered(need, wanted, reach).add_columns(need.c.geom.label("point"))
    needs = needs.where(need.c.quantity > 0)
    if after_seq is not None:
        needs = needs.where(need.c.updated_seq > after_seq)
    return needs.order_by(need.c.updated_seq).limit(limit + 1).subquery("n")


def _nearest_offers(page: Any, f: MatchFilter, reach: RowReach) -> Any:
    """Per need of ``page``, its nearest visible offers (a LATERAL subquery): the same picture,
    type and unit, another community, something available."""
    offer = BALANCE.alias("offer")
    here, there = func.geography(page.c.point), func.geography(offer.c.geom)
    distance = func.ST_Distance(here, there)  # on the spheroid
    offers = (
        select(
            offer.c.community_id.label("offer_community_id"),
            offer.c.quantity.label("offer_quantity"),
            offer.c.observed_at.label("offer_observed_at"),
            offer.c.event_id.label("offer_event_id"),
            distance.label("distance_m"),
        )
        .where(
            reach.on(offer),
            offer.c.status == page.c.status,
            offer.c.resource_type == page.c.resource_type,
            offer.c.direction == "available",
            offer.c.unit == page.c.unit,
            offer.c.community_id != page.c.community_id,
            offer.c.quantity > 0,
        )
        .order_by(distance, offer.c.community_id)
        .limit(f.per_need)
    )
    if f.max_distance_m is not None:
        offers = offers.where(func.ST_DWithin(here, there, f.max_distance_m))
    return offers.lateral("o")


def list_matches(
    session: Session,
    f: MatchFilter,
    reach: RowReach,
    *,
    after_seq: int | None,
    limit: int,
) -> tuple[list[NeedMatches], bool]:
    """Up to ``limit`` visible needs in ``updated_seq`` order after ``after_seq``, each with
    its nearest visible offers; and whether more needs exist. One statement: the page of
    needs, and per need a scan of the offers of its type (index ``resource_balance_type``)."""
    page = _needs(f, reach, after_seq, limit)
    near = _nearest_offers(page, f, reach)
    columns = [c for c in page.c if c.name != "point"]
    query: Select[Any] = (
        select(*columns, near)
        .select_from(page.outerjoin(near, true()))
        .order_by(page.c.updated_seq, near.c.distance_m, near.c.offer_community_id)
    )
    in_utc(session)
    needs: dict[int, Row[Any]] = {}
    offers: defaultdict[int, list[Row[Any]]] = defaultdict(list)
    for row in session.execute(query).all():
        needs.setdefault(row.updated_seq, row)
        if row.offer_community_id is not None:
            offers[row.updated_seq].append(row)
    found = [NeedMatches(need, offers[seq]) for seq, need in needs.items()]
    return found[:limit], len(found) > limit


def greedy_cover(needed: float, available: Sequence[float]) -> list[float]:
    """How much of ``needed`` each offer would fill, taking the offers in order (nearest
    first) and each as far as it goes: the covers add up to min(needed, sum(available))."""
    covers, left = [], max(needed, 0.0)
    for quantity in available:
        take = min(max(quantity, 0.0), left)
        covers.append(take)
        left -= take
    return covers
