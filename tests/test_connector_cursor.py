"""Pure parts of the incremental kinds: typed cells, the saved cursor value, the wrapped query,
and the per-row cursor store."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql

from connectors.cells import to_cell
from connectors.cursor import CursorStore, decode_value, encode_value
from connectors.mapping import load_mapping
from connectors.outbox import OutboxBusy
from connectors.sql_source import SqlQuery, lookback

ROOT = Path(__file__).resolve().parents[1]
SQL_MAPPING = ROOT / "config" / "mappings" / "community-reports-sql.toml"


@given(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_a_whole_number_cell_reads_as_typed(n: int) -> None:
    assert to_cell(float(n)) == str(n) == to_cell(n)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_cell_reads_back_to_the_same_number(x: float) -> None:
    text = to_cell(x)
    assert isinstance(text, str) and float(text) == x


def test_other_cells() -> None:
    when = datetime(2018, 12, 1, 0, 25)
    assert to_cell(when) is when and to_cell(date(2018, 12, 1)) == date(2018, 12, 1)
    assert [to_cell(v) for v in (True, Decimal("37.7300"), b"caf\xc3\xa9", None)] == [
        "true",
        "37.7300",
        "café",
        None,
    ]


cursor_values = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False),
)


@given(cursor_values)
def test_a_saved_cursor_value_keeps_its_type(value: Any) -> None:
    back = decode_value(encode_value(value))
    assert back == value and type(back) is type(value)


def test_lookback_per_type() -> None:
    t = datetime(2026, 1, 5, 9, 0)
    assert lookback(t, 90) == t - timedelta(seconds=90) and lookback(t, 0) is t
    assert lookback(date(2026, 1, 5), 1) == date(2026, 1, 4)
    assert lookback(100, 2.5) == 97 and lookback(Decimal("1.5"), 1) == Decimal("0.5")
    assert lookback("b", 5) == "b"


def test_the_wrapped_query_quotes_and_binds() -> None:
    mapping = load_mapping(SQL_MAPPING)
    assert mapping.sql is not None
    query = SqlQuery("mysql+pymysql://u:secret@h/db", mapping, mapping.sql)
    assert "secret" not in query.label
    stmt, params = query.statement(mysql.dialect(), None)
    assert params == {} and str(stmt).endswith(
        "WHERE hub_q.updated_at IS NOT NULL ORDER BY hub_q.updated_at, hub_q.report_id"
    )
    stmt, params = query.statement(postgresql.dialect(), datetime(2026, 1, 5))
    assert "hub_q.updated_at >= :hub_cursor" in str(stmt)
    assert params == {"hub_cursor": datetime(2026, 1, 5)}


def test_cursor_store_rows_positions_and_lock(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ids = [uuid.uuid4() for _ in range(1200)]
    with CursorStore(path) as store:
        with pytest.raises(OutboxBusy, match="one run per source system"):
            CursorStore(path)
        store.save([(f"r{i}", b"d" * 16, e) for i, e in enumerate(ids)], ("sql:x", 7))
    with CursorStore(path) as store:  # reopened: everything kept
        assert store.rows() == 1200 and store.position("sql:x") == 7
        known = store.known([f"r{i}" for i in range(0, 1300, 7)])
        assert len(known) == len(range(0, 1200, 7)) and known["r7"].event_id == ids[7]
        assert store.position("other") is None


def test_the_kinds_are_registered() -> None:
    from connectors.registry import kinds, load_connector
    from connectors.sql_connector import SqlConnector
    from connectors.xlsx_connector import XlsxConnector

    assert kinds() == ["cap", "csv", "sql", "xlsx"]
    assert load_connector("xlsx") is XlsxConnector and load_connector("sql") is SqlConnector
