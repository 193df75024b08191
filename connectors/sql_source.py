"""SQL source: a community database polled through SQLAlchemy with an incremental cursor.

The mapping's query is wrapped, never edited:

    SELECT * FROM (<query>) AS hub_q
    WHERE hub_q.<cursor> IS NOT NULL [AND hub_q.<cursor> >= :cursor]
    ORDER BY hub_q.<cursor>, hub_q.<id>

``>=``, not ``>``: rows that share the last cursor value (two reports in one second, a batch
update) are read again, and the cursor store's per-row state (``connectors.changes``) skips
those already sent, so a tie never loses a row and never sends one twice. The position saved
after each chunk is the cursor value of its last row, with its type (a DATETIME comes back as
a datetime). Rows are streamed (server-side cursor), not loaded whole.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from connectors.cells import to_row
from connectors.csv_source import SourceError
from connectors.cursor import CursorStore
from connectors.fields import Row
from connectors.mapping import Mapping, SqlSection

STREAM_ROWS = 5_000  # rows fetched from the server per round trip


class SqlQuery:
    """A ``RowSource`` (``connectors.run``) polling ``[sql] query`` from the saved cursor on."""

    def __init__(self, url: str, mapping: Mapping, spec: SqlSection) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError as exc:
            raise SourceError(f"not a SQLAlchemy URL: {exc}") from None
        self.spec, self.key = spec, mapping.source.id
        self.label = self.url.render_as_string(hide_password=True)
        digest = hashlib.sha256(spec.query.encode()).hexdigest()[:12]
        self.name = f"sql:{spec.cursor_column}:{digest}"  # a new query starts from scratch
        self._last: Any = None  # the cursor value of the last row handed out

    def position(self) -> tuple[str, Any] | None:
        return None if self._last is None else (self.name, self._last)

    def open(
        self, cursor: CursorStore | None
    ) -> AbstractContextManager[tuple[list[str], Iterator[Row]]]:
        return self._open(cursor.position(self.name) if cursor else None)

    @contextmanager
    def _open(self, start: Any) -> Iterator[tuple[list[str], Iterator[Row]]]:
        try:
            engine = create_engine(self.url, poolclass=NullPool)
        except (ArgumentError, ImportError) as exc:  # an unknown dialect or missing driver
            raise SourceError(f"{self.label}: cannot use this URL ({exc})") from None
        try:
            with self._connect(engine.connect) as conn:
                stmt, params = self.statement(engine.dialect, start)
                try:
                    result = conn.execution_options(stream_results=True).execute(stmt, params)
                except SQLAlchemyError as exc:
                    raise SourceError(
                        f"{self.label}: the query failed: {_why(exc)} (the wrapped query needs "
                        f"the columns {self.spec.cursor_column!r} ([sql] cursor_column) and "
                        f"{self.key!r} ([source] id))"
                    ) from None
                header = list(result.keys())
                yield header, self._rows(result, header)
        finally:
            engine.dispose()

    def statement(self, dialect: Dialect, start: Any) -> tuple[Any, dict[str, Any]]:
        quote = dialect.identifier_preparer.quote
        c, k = f"hub_q.{quote(self.spec.cursor_column)}", f"hub_q.{quote(self.key)}"
        where, params = f"{c} IS NOT NULL", {}
        if start is not None:
            where += f" AND {c} >= :hub_cursor"
            params["hub_cursor"] = lookback(start, self.spec.lookback)
        sql = f"SELECT * FROM ({self.spec.query}) AS hub_q WHERE {where} ORDER BY {c}, {k}"
        return text(sql), params

    def _rows(self, result: Any, header: list[str]) -> Iterator[Row]:
        at = header.index(self.spec.cursor_column)
        try:
            for part in result.partitions(STREAM_ROWS):
                for values in part:
                    self._last = values[at]
                    yield to_row(header, values)
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: reading rows failed: {_why(exc)}") from None

    @contextmanager
    def _connect(self, connect: Any) -> Iterator[Connection]:
        try:
            conn = connect()
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: cannot connect: {_why(exc)}") from None
        with conn:
            yield conn


def lookback(value: Any, amount: float) -> Any:
    """``value`` moved back by ``amount`` (seconds for a time, units for a number)."""
    if not amount:
        return value
    if isinstance(value, datetime):
        return value - timedelta(seconds=amount)
    if isinstance(value, date):
        return value - timedelta(days=math.ceil(amount / 86_400))
    if isinstance(value, int):
        return value - math.ceil(amount)
    if isinstance(value, Decimal):
        return value - Decimal(str(amount))
    if isinstance(value, float):
        return value - amount
    return value  # text cursors have no distance: lookback does not apply


def _why(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig) if orig is not None else str(exc).splitlines()[0]
