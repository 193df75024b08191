"""The read side of the risk per grid cell, as ``/v1/risk`` needs it.

As ``hub.store.queries``: SQLAlchemy Core over the SQLModel tables, every value a bound
parameter, geometries as GeoJSON text, timestamps in UTC. The caller's reach comes in as a
:class:`~hub.store.reach.RowReach` (``hub.access`` compiles it: the rule of the row-level
policy ``hub_sees_place`` of migration 0006, written with bound geometries so that the GiST
index on ``risk_cell.geom`` serves it); the policy itself stays as the second wall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, func, select
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store.queries import BBox, in_bbox, page_after
from hub.store.reach import ALL_ROWS, RowReach
from schemas.picture import RISK_LEVELS

RISK: Table = SQLModel.metadata.tables["risk_cell"]


@dataclass(frozen=True)
class RiskFilter:
    """What ``GET /v1/risk`` may filter on; ``None`` means no condition."""

    status: str = "actual"
    bbox: BBox | None = None
    community: str | None = None
    min_level: str = "yellow"  # blue cells only when asked for


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
    visible: RowReach = ALL_ROWS,
) -> tuple[Sequence[Row[Any]], bool]:
    """Up to ``limit`` visible cells in ``updated_seq`` order after ``after_seq``; and whether
    more exist. A cell re-scored while a client pages gets a new ``updated_seq``: it moves to
    the end, so it is seen again, never missed."""
    c = RISK.c
    levels = RISK_LEVELS[RISK_LEVELS.index(f.min_level) :]
    query = select(*_columns()).where(visible.where, c.status == f.status, c.level.in_(levels))
    if f.bbox is not None:
        query = query.where(in_bbox(c.geom, f.bbox))
    if f.community is not None:
        query = query.where(c.community_id == f.community)
    return page_after(session, query, c.updated_seq, after_seq, limit)
