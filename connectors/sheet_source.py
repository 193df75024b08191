"""Spreadsheet source: one sheet of an .xlsx, .xlsm, .xls or .ods file (python-calamine), read
as rows of a CSV file would be: the header row names the columns, and each later non-empty row
is a data row, converted by the same ``RowConverter``.

Cells keep their types until ``connectors.cells`` makes them text; date cells stay dates, so a
real date cell needs no ``[time] format`` (a time typed as text still uses it). A workbook is a
zip: there is no offset to resume from, so it is read whole each run and the cursor is the
per-row state of ``connectors.cursor`` (rows sent before are skipped unless they changed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook

from connectors.cells import to_cell, to_row
from connectors.csv_source import SourceError
from connectors.cursor import CursorStore
from connectors.fields import Row
from connectors.mapping import Mapping


class Sheet:
    """A ``RowSource`` (``connectors.run``) reading the mapping's ``[xlsx] sheet``."""

    def __init__(self, path: Path, mapping: Mapping) -> None:
        self.path = path
        self.spec = mapping.xlsx
        self.label = f"{path} [sheet {self.spec.sheet!r}]"

    def open(
        self, cursor: CursorStore | None
    ) -> AbstractContextManager[tuple[list[str], Iterator[Row]]]:
        return self._open()

    def position(self) -> tuple[str, Any] | None:
        return None  # re-read whole; the cursor store's rows say what was sent

    @contextmanager
    def _open(self) -> Iterator[tuple[list[str], Iterator[Row]]]:
        try:
            book = CalamineWorkbook.from_path(self.path)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open ({exc.strerror or exc})") from exc
        except (CalamineError, ValueError) as exc:
            raise SourceError(f"{self.path}: not a readable spreadsheet ({exc})") from exc
        with book:
            sheet = self._sheet(book)
            lines = self._lines(sheet)
            header = [str(to_cell(v) or "").strip() for v in next(lines, [])]
            if not any(header):
                raise SourceError(f"{self.label}: no header row")
            yield header, _data(header, lines, self.label)

    def _sheet(self, book: CalamineWorkbook) -> CalamineSheet:
        wanted = self.spec.sheet
        try:
            if isinstance(wanted, int):
                return book.get_sheet_by_index(wanted)
            return book.get_sheet_by_name(wanted)
        except (CalamineError, IndexError) as exc:
            names = ", ".join(repr(n) for n in book.sheet_names)
            raise SourceError(f"{self.path}: no sheet {wanted!r} ({exc}); it has {names}") from exc

    def _lines(self, sheet: CalamineSheet) -> Iterator[list[Any]]:
        """The header row and what follows it."""
        first = sheet.start[0] if sheet.start else 0  # calamine skips the empty rows above
        rows = sheet.iter_rows()
        if self.spec.header_row is None:  # the first non-empty row
            yield from (r for r in rows if any(v != "" for v in r))
            return
        for n, row in enumerate(rows, start=first + 1):  # n: the 1-based row the UI shows
            if n >= self.spec.header_row:
                yield row


def _data(header: list[str], lines: Iterator[list[Any]], label: str) -> Iterator[Row]:
    try:
        for values in lines:
            if any(v != "" for v in values):  # blank rows are skipped, as csv does
                yield to_row(header, values)
    except CalamineError as exc:
        raise SourceError(f"{label}: unreadable ({exc})") from exc
