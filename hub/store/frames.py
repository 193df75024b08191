"""polars frames in and out of PostgreSQL without a Python call per value.

Out: ``copy_frame`` writes a frame as CSV (polars, in bulk) into ``COPY ... FROM STDIN (FORMAT
csv)``; lists become array literals, timestamps RFC 3339 with their offset. In: ``read_frame``
turns the rows of a query into a frame of a given schema. ``pg_array`` passes a long list of
ids as one array literal (psycopg's list dumper costs a Python call per item).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl
import psycopg

Schema = Mapping[str, pl.DataType | type[pl.DataType]]

_TIMESTAMP = "%Y-%m-%dT%H:%M:%S%.6f%:z"
_PG_TIMESTAMP = "%Y-%m-%d %H:%M:%S%.f%#z"  # timestamptz as PostgreSQL writes it (ISO style)


def copy_frame(cur: psycopg.Cursor[Any], statement: str, frame: pl.DataFrame) -> None:
    """``statement`` is ``COPY table (columns) FROM STDIN (FORMAT csv)``, columns in the order
    of ``frame``. An empty frame writes nothing."""
    if frame.height == 0:
        return
    buf = io.BytesIO()
    frame.select(_csv_ready(name, dtype) for name, dtype in frame.schema.items()).write_csv(
        buf, include_header=False
    )
    with cur.copy(statement) as copy:
        copy.write(buf.getvalue())


def _csv_ready(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        return col.dt.strftime(_TIMESTAMP)
    if isinstance(dtype, pl.List):
        quoted = col.list.eval(_array_item(pl.element(), dtype.inner))
        return (pl.lit("{") + quoted.list.join(",") + pl.lit("}")).alias(name)
    return col


def _array_item(value: pl.Expr, dtype: Any) -> pl.Expr:
    """An array element quoted, backslash and quote escaped: any text survives the parser;
    a null is NULL."""
    text = (
        value.dt.strftime(_TIMESTAMP) if isinstance(dtype, pl.Datetime) else value.cast(pl.String)
    )
    escaped = text.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
        '"', '\\"', literal=True
    )
    return pl.when(value.is_null()).then(pl.lit("NULL")).otherwise(pl.lit('"') + escaped + '"')


def read_frame(
    conn: psycopg.Connection[Any], sql: str, params: Mapping[str, Any], schema: Schema
) -> pl.DataFrame:
    """The rows of ``sql``, its columns in the order of ``schema``, read by ``COPY ... TO
    STDOUT (FORMAT csv)`` and parsed by polars in bulk (a row of tuples costs a Python object
    per value: it took a quarter of fusion's time). Lists must hold plain tokens (uuids,
    codes: nothing to quote), as the callers' ``text[]`` columns do."""
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy:
        for chunk in copy:
            buf.write(chunk)
    names = list(schema)
    if buf.tell() == 0:
        return pl.DataFrame(schema=dict(schema))
    text = pl.read_csv(
        buf.getvalue(),
        has_header=False,
        new_columns=names,
        schema_overrides=dict.fromkeys(names, pl.String),
        infer_schema=False,
    )
    return text.select(_parsed(name, dtype) for name, dtype in schema.items())


def _parsed(name: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """A CSV text column of PostgreSQL's output as ``dtype``."""
    col = pl.col(name)
    if dtype == pl.Boolean:
        return (col == "t").alias(name)
    if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime:
        zone = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
        return col.str.to_datetime(_PG_TIMESTAMP, time_unit="us", time_zone=zone or "UTC")
    if isinstance(dtype, pl.List):
        items = col.str.strip_prefix("{").str.strip_suffix("}")
        split = (
            pl.when(items == "")
            .then(pl.lit([], pl.List(pl.String)))
            .otherwise(items.str.split(","))
        )
        return split.cast(dtype).alias(name)
    return col.cast(dtype)


def pg_array(values: Iterable[Any]) -> str:
    """An array literal of plain tokens (uuids, numbers): cast it in SQL, ``%s::uuid[]``."""
    return "{" + ",".join(map(str, values)) + "}"


def pg_array_of(values: pl.Series) -> str:
    """An array literal of any text or timestamps (no nulls), built in bulk: cast it in SQL,
    ``%s::timestamptz[]``."""
    items = pl.select(_array_item(pl.lit(values), values.dtype).str.join(","))
    return "{" + str(items.item()) + "}"
