"""The read side of the risk per grid cell, as ``/v1/risk`` needs it.

As ``hub.store.queries``: SQLAlchemy Core over the SQLModel tables, every value a bound
parameter, geometries as GeoJSON text, timestamps in UTC. The caller's reach is
:func:`place_policy`, the rule of the row-level policy ``hub_sees_place`` (migration 0006)
written with bound geometries so that the GiST index on ``risk_cell.geom`` serves it; the
policy itself stays as the second wall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, and_, false, func, literal, or_, select, true
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.auth.principal import Principal
from hub.store.queries import BBox, in_utc, intersects
from schemas.picture import RISK_LEVELS, SHARED_STATUS

RISK: Table = SQLModel.metadata.tables["risk_cell"]


@dataclass(frozen=True)
class RiskFilter:
    """What ``GET /v1/risk`` may filter on; ``None`` means no condition."""

    status: str = "actual"
    bbox: BBox | None = None
    community: str | None = None
    min_level: str = "yellow"  # blue cells only when asked for


def place_policy(principal: Principal, zone_wkb: bytes | None = None) -> ColumnElement[bool]:
    """The risk cells ``principal`` may see: everything (admin, analyst), a department's
    jurisdiction, a community's own cells and the real (``actual``) risk within its neighbour
    zone (``zone_wkb``: ``hub.auth.policy.neighbour_zone``). Risk is aggregated: no categories
    and no reporters to hide."""
    c = RISK.c
    if principal.kind in ("admin", "analyst"):
        return true()
    if principal.kind == "department" and principal.jurisdiction_wkb is not None:
        return _within(principal.jurisdiction_wkb)
    if principal.kind == "community" and principal.community_id is not None:
        own = c.community_id == principal.community_id
        if zone_wkb is None:
            return own
        return or_(own, and_(c.status == SHARED_STATUS, _within(zone_wkb)))
    return false()  # an unknown kind, or one without its area, sees nothing


def _within(zone_wkb: bytes) -> ColumnElement[bool]:
    return intersects(RISK.c.geom, func.ST_GeomFromWKB(literal(zone_wkb), 4326))


def _columns() -> list[Any]:
    c = RISK.c
    return [
        c.status,
        c.grid_cell,
        c.community_id,
        c.score,
        c.level,
        c.level_since,
        c.incidents,
        c.as_of,
        c.updated_seq,
        func.ST_AsGeoJSON(c.geom).label("geometry"),
    ]


def list_risk_cells(
    session: Session,
    f: RiskFilter,
    *,
    after_seq: int | None,
    limit: int,
    visible: ColumnElement[bool] | None = None,
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` visible cells in ``updated_seq`` order after ``after_seq``; and whether
    more exist. A cell re-scored while a client pages gets a new ``updated_seq``: it moves to
    the end, so it is seen again, never missed."""
    c = RISK.c
    levels = RISK_LEVELS[RISK_LEVELS.index(f.min_level) :]
    query = select(*_columns()).where(
        visible if visible is not None else true(), c.status == f.status, c.level.in_(levels)
    )
    if f.bbox is not None:
        query = query.where(intersects(c.geom, func.ST_MakeEnvelope(*astuple(f.bbox), 4326)))
    if f.community is not None:
        query = query.where(c.community_id == f.community)
    if after_seq is not None:
        query = query.where(c.updated_seq > after_seq)
    in_utc(session)
    rows = session.execute(query.order_by(c.updated_seq).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit
