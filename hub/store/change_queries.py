"""The read side of the change log (``picture_change``, written by ``hub.fusion.changes``), as
``/v1/stream`` needs it: the changes after a sequence that match a client's filters, and each
changed object re-read through the caller's reach with the list endpoints' own queries.

As ``hub.store.queries``: SQLAlchemy Core, every value a bound parameter. The change rows are
under row-level security (the API role sees a change only where it sees its object); the
objects are read with the reach ``hub.access`` compiled, so what the stream sends is exactly
what the list endpoints would list for the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, and_, any_, func, literal, or_, select, text
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from hub.store import change_models  # noqa: F401  (registers picture_change in SQLModel.metadata)
from hub.store.incident_queries import INCIDENT, IncidentFilter, list_incidents
from hub.store.queries import BBox, in_bbox
from hub.store.reach import IncidentReach, RowReach
from hub.store.resource_queries import BALANCE, BalanceFilter, list_balances
from hub.store.risk_queries import RISK, RiskFilter, list_risk_cells
from schemas.picture import RISK_LEVELS

CHANGE: Table = SQLModel.metadata.tables["picture_change"]
CHANNEL = "hub_changes"  # fusion's NOTIFY channel; the payload is the highest new sequence

TYPES = ("incident", "warning", "risk", "resource")
_OF_INCIDENTS = ("incident", "warning")


@dataclass(frozen=True)
class ChangeFilter:
    """Which changes a stream client asked for; ``None`` means no condition. ``event_type``
    and ``verification`` narrow the incident and warning changes, ``min_level`` the risk
    changes; changes of other types pass them."""

    types: tuple[str, ...] = TYPES
    status: str = "actual"
    bbox: BBox | None = None
    community: str | None = None
    event_type: str | None = None
    verification: tuple[str, ...] | None = None
    min_level: str | None = None


def _only_for(types: Sequence[str], condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return or_(CHANGE.c.type.not_in(types), condition)


def _where(f: ChangeFilter) -> list[ColumnElement[bool]]:
    c = CHANGE.c
    where = [c.type.in_(f.types), c.status == f.status]
    if f.bbox is not None:
        where.append(in_bbox(c.bbox, f.bbox))
    if f.community is not None:
        where.append(literal(f.community) == any_(c.communities))
    if f.event_type is not None:
        where.append(_only_for(_OF_INCIDENTS, c.event_type == f.event_type))
    if f.verification is not None:
        where.append(_only_for(_OF_INCIDENTS, c.verification.in_(f.verification)))
    if f.min_level is not None:
        levels = RISK_LEVELS[RISK_LEVELS.index(f.min_level) :]
        where.append(_only_for(("risk",), c.level.in_(levels)))
    return where


def changes_after(
    session: Session, f: ChangeFilter, after: int, limit: int, upto: int | None = None
) -> list[Row[Any]]:
    """Up to ``limit`` changes matching ``f`` after sequence ``after`` (and up to ``upto``),
    in sequence order."""
    c = CHANGE.c
    bound = [c.seq <= upto] if upto is not None else []
    query = (
        select(c.seq, c.type, c.change, c.object_id, c.at)
        .where(c.seq > after, *bound, *_where(f))
        .order_by(c.seq)
        .limit(limit)
    )
    return list(session.execute(query))


def last_seq(session: Session) -> int:
    """The highest sequence recorded (0 for none): where a client without a cursor starts.
    The identity's position, not ``max(seq)`` under row-level security (a policy check per
    row): only a number leaves the store."""
    found = session.execute(text(_LAST_SEQ)).scalar()
    return int(found or 0)


def head(session: Session) -> int:
    """The highest change sequence committed, out of reach or not (``hub_change_head``, a
    function of migration 0015): with sequence order being commit order, every change up to
    it is committed, so a reader that has read all it may see up to it can move its cursor
    there."""
    return int(session.execute(text("SELECT hub_change_head()")).scalar() or 0)


_LAST_SEQ = "SELECT pg_sequence_last_value('picture_change_seq_seq'::regclass)"


def incidents_by_id(
    session: Session, ids: Sequence[str], status: str, visible: IncidentReach
) -> list[Row[Any]]:
    """The incidents ``ids`` the caller sees, with the columns ``/v1/incidents`` lists."""
    narrowed = IncidentReach(and_(visible.where, INCIDENT.c.id.in_(ids)), visible.members)
    found = IncidentFilter(status=status)
    rows, _ = list_incidents(session, found, after_seq=None, limit=len(ids), visible=narrowed)
    return list(rows)


def risk_by_cell(
    session: Session, cells: Sequence[str], status: str, visible: RowReach
) -> list[Row[Any]]:
    """The risk cells ``cells`` the caller sees, any level, as ``/v1/risk`` lists them."""
    narrowed = RowReach(and_(visible.where, RISK.c.grid_cell.in_(cells)))
    found = RiskFilter(status=status, min_level=RISK_LEVELS[0])
    rows, _ = list_risk_cells(session, found, after_seq=None, limit=len(cells), visible=narrowed)
    return list(rows)


def balance_key(row: Row[Any]) -> str:
    """A balance's object id in the change log: community/resource_type/unit/direction."""
    return "/".join((row.community_id, row.resource_type, row.unit, row.direction))


def balances_by_key(
    session: Session, keys: Sequence[str], status: str, visible: RowReach
) -> list[Row[Any]]:
    """The balances ``keys`` (``balance_key``) the caller sees, as ``/v1/resources`` lists."""
    b = BALANCE.c
    key = func.concat_ws("/", b.community_id, b.resource_type, b.unit, b.direction)
    communities = sorted({k.split("/", 1)[0] for k in keys})
    narrowed = RowReach(and_(visible.where, b.community_id.in_(communities), key.in_(keys)))
    found = BalanceFilter(status=status)
    rows, _ = list_balances(session, found, narrowed, after_seq=None, limit=len(keys))
    return list(rows)
