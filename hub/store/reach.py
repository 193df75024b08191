"""A caller's reach as the read queries take it: SQL over the hub's tables, nothing else.

``hub.access`` compiles a principal into these (the policy: who sees what); the store only puts
them into its queries, so rows and identities out of reach never leave PostgreSQL. The store
knows no principal. The defaults show everything: the owner's view, for the CLI and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, FromClause, true
from sqlalchemy.sql.util import ClauseAdapter
from sqlmodel import SQLModel

from hub.store import models  # noqa: F401  (registers the tables in SQLModel.metadata)


@dataclass(frozen=True)
class RowReach:
    """The rows of one table a caller may see: ``where``, a predicate over that table."""

    where: ColumnElement[bool] = field(default_factory=true)

    def on(self, alias: FromClause) -> ColumnElement[bool]:
        """``where`` over an alias of the table (a query that reads the table twice)."""
        return ClauseAdapter(alias).traverse(self.where)


@dataclass(frozen=True)
class EventReach(RowReach):
    """Event rows (``where``) and the reporter column, or NULL where identities are hidden."""

    reporter: ColumnElement[Any] = field(
        default_factory=lambda: SQLModel.metadata.tables["event"].c.reporter
    )


ALL_EVENTS = EventReach()


@dataclass(frozen=True)
class IncidentReach(RowReach):
    """Incident rows (``where``), and the reach of their member events (``members``), so that
    an incident's provenance shows exactly what the event log would."""

    members: EventReach = ALL_EVENTS


ALL_ROWS = RowReach()
ALL_INCIDENTS = IncidentReach()
