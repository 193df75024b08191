"""Typed cells (a spreadsheet's, a database's) as the row converter reads them: text, except
dates, which stay dates (``connectors.fields.Cell``).

Numbers become the text a person would type: a spreadsheet stores every number as a float, so
the id ``74339603074`` comes back as ``74339603074.0`` and must read ``74339603074`` again, or
the same row from a CSV export and from the workbook would make two events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

from connectors.fields import Cell

_EXACT = 2**53  # floats below it hold every integer exactly


def to_cell(value: Any) -> Cell:
    if value is None or isinstance(value, str | date):  # datetime is a date
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < _EXACT else repr(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def to_row(header: Sequence[str], values: Sequence[Any]) -> dict[str, Cell]:
    return {name: to_cell(v) for name, v in zip(header, values, strict=False) if name}
