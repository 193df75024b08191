"""Real workbooks for the spreadsheet connector's tests: the project's real SF CSV rows written
as an .xlsx (XlsxWriter) and an .ods (odfpy) the way a person's spreadsheet holds them: dates
and times as date cells, ids and coordinates as numbers, codes with leading zeros as text,
empty cells empty."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import xlsxwriter
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

Value = str | int | float | date | None

SFPD_DATETIME = "%Y/%m/%d %I:%M:%S %p"
_INTEGER = re.compile(r"^-?[1-9][0-9]{0,14}$")  # no leading zero: a number, not a code
_DECIMAL = re.compile(r"^-?[0-9]+\.[0-9]+$")


def typed(column: str, text: str) -> Value:
    """A CSV cell as a spreadsheet would hold it."""
    if text == "":
        return None
    if column.endswith("Datetime"):
        return datetime.strptime(text, SFPD_DATETIME)
    if column == "Incident Date":
        return datetime.strptime(text, "%Y/%m/%d").date()
    if _INTEGER.match(text):
        return int(text)
    if _DECIMAL.match(text):
        return float(text)
    return text


def typed_rows(path: Path, start: int, stop: int, text_every: int = 0) -> tuple[list[str], list]:
    """Rows ``start..stop`` of a CSV file, typed; every ``text_every``-th row keeps its
    datetimes as text (a time typed by hand), so both kinds of time cell occur."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        out = []
        for i, row in enumerate(reader):
            if start <= i < stop:
                as_text = text_every and i % text_every == 0
                out.append(
                    [
                        t if as_text and c.endswith("Datetime") else typed(c, t)
                        for c, t in zip(header, row, strict=True)
                    ]
                )
    return header, out


def write_xlsx(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[Value]],
    *,
    sheet: str = "Reports",
    title: str | None = None,
) -> Path:
    book = xlsxwriter.Workbook(str(path))
    book.add_worksheet("Notes").write(0, 0, "a first sheet that is not the data")
    ws = book.add_worksheet(sheet)
    stamp = book.add_format({"num_format": "yyyy/mm/dd hh:mm:ss AM/PM"})
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    top = 0
    if title is not None:
        ws.write_string(0, 0, title)
        top = 2  # a title, a blank row, then the header
    ws.write_row(top, 0, list(header))
    for r, row in enumerate(rows, start=top + 1):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, datetime):
                ws.write_datetime(r, c, value, stamp)
            elif isinstance(value, date):
                ws.write_datetime(r, c, value, day)
            elif isinstance(value, int | float):
                ws.write_number(r, c, value)
            else:
                ws.write_string(r, c, value)
    book.close()
    return path


def write_ods(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[Value]], *, sheet: str = "Reports"
) -> Path:
    doc = OpenDocumentSpreadsheet()
    notes = Table(name="Notes")
    notes.addElement(_row(["a first sheet that is not the data"]))
    doc.spreadsheet.addElement(notes)
    table = Table(name=sheet)
    table.addElement(_row(list(header)))
    for row in rows:
        table.addElement(_row(row))
    doc.spreadsheet.addElement(table)
    doc.save(str(path))
    return path


def _row(values: Sequence[Value]) -> TableRow:
    row = TableRow()
    for value in values:
        row.addElement(_cell(value))
    return row


def _cell(value: Value) -> TableCell:
    if value is None:
        return TableCell()
    if isinstance(value, date):  # a datetime too
        cell = TableCell(valuetype="date", datevalue=value.isoformat())
    elif isinstance(value, int | float):
        cell = TableCell(valuetype="float", value=repr(value))
    else:
        cell = TableCell(valuetype="string")
    cell.addElement(P(text=str(value)))
    return cell
