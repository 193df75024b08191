"""The models (hub.store.models, hub.store.auth_models) agree with the migrated database.

The migrations are the truth of what the database is (they are deployed); the models mirror
them. Alembic's comparison (``hub.store.schema_compare``) covers tables, columns, defaults,
comments, indexes and keys; what it skips, CHECK constraints and an index's method, predicate
and INCLUDE columns, is compared here by creating the models in a scratch schema and reading
both back as PostgreSQL prints them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Index,
    MetaData,
    Text,
    create_engine,
    text,
)

from hub.store.schema_compare import model_drift, target_metadata

SCRATCH = "model_check"

# Every CHECK constraint and index of the given schema's tables, as PostgreSQL prints them
# (the schema's name taken out, so that the two schemas' definitions compare equal).
DEFINITIONS = text(
    """
    SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE con.contype = 'c' AND n.nspname = :schema AND c.relname = ANY (:tables)
    UNION ALL
    SELECT tablename, indexname, replace(indexdef, ' ON ' || schemaname || '.', ' ON ')
    FROM pg_indexes WHERE schemaname = :schema AND tablename = ANY (:tables)
    """
)


@pytest.fixture
def connection(database_url: str) -> Iterator[Connection]:
    """A connection to the session's migrated database; whatever a test creates is rolled back."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            # a test's DDL waits for another's lock at most this long, then fails
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            yield conn
            conn.rollback()
    finally:
        engine.dispose()


def copy_of_models() -> MetaData:
    copy = MetaData()
    for table in target_metadata().tables.values():
        table.to_metadata(copy)
    return copy


def definition_drift(conn: Connection, metadata: MetaData) -> set[tuple[str, str, str, str]]:
    """CHECK constraints and indexes that differ between the models and the database: the
    models are created in a scratch schema (inside the connection's transaction) and both
    schemas' definitions read back as PostgreSQL normalises them."""
    conn.execute(text(f"CREATE SCHEMA {SCRATCH}"))
    scratch = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(scratch, schema=SCRATCH)  # foreign keys follow into the schema
    scratch.create_all(conn)
    tables = list(metadata.tables)
    database = set(conn.execute(DEFINITIONS, {"schema": "public", "tables": tables}).all())
    models = set(conn.execute(DEFINITIONS, {"schema": SCRATCH, "tables": tables}).all())
    return {(*row, "database only") for row in database - models} | {
        (*row, "models only") for row in models - database
    }


def test_models_agree_with_migrations(connection: Connection) -> None:
    assert model_drift(connection) == []


def test_checks_and_index_definitions_agree_with_migrations(connection: Connection) -> None:
    assert definition_drift(connection, target_metadata()) == set()


def test_comparison_reports_a_column_the_database_lacks(connection: Connection) -> None:
    models = copy_of_models()
    models.tables["event"].append_column(Column("not_migrated", Text))
    drift = model_drift(connection, models)
    assert [(op, column.name) for op, _, table, column in drift if table == "event"] == [
        ("add_column", "not_migrated")
    ]


def test_comparison_reports_what_only_the_database_has(connection: Connection) -> None:
    # as if a migration had added them and the models not followed (rolled back afterwards)
    connection.execute(text("ALTER TABLE incident_report ADD COLUMN not_modelled integer"))
    connection.execute(text("CREATE INDEX not_modelled_index ON incident_alias (incident_id)"))
    drift = [d for d in model_drift(connection) if isinstance(d, tuple)]
    assert [(d[0], d[2], d[3].name) for d in drift if d[0] == "remove_column"] == [
        ("remove_column", "incident_report", "not_modelled")
    ]
    assert [d[1].name for d in drift if d[0] == "remove_index"] == ["not_modelled_index"]


def test_definition_comparison_reports_a_predicate_and_a_check(connection: Connection) -> None:
    models = copy_of_models()
    risk = models.tables["risk_cell"]
    raised = next(i for i in risk.indexes if i.name == "risk_cell_raised")
    risk.indexes.remove(raised)
    Index("risk_cell_raised", risk.c.status, risk.c.level, postgresql_where="level = 'red'")
    risk.append_constraint(CheckConstraint("score >= 0"))
    drift = {(table, name, side) for table, name, _, side in definition_drift(connection, models)}
    assert drift == {
        ("risk_cell", "risk_cell_raised", "database only"),
        ("risk_cell", "risk_cell_raised", "models only"),
        ("risk_cell", "risk_cell_score_check", "models only"),
    }
