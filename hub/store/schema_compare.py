"""How the models are compared with the migrated database: one set of options for Alembic's
``env.py`` (``alembic revision --autogenerate``) and the test that runs the comparison.

Alembic compares tables, columns (types, nullability, server defaults, comments), indexes
(columns and expressions, uniqueness), unique and foreign-key constraints. It does not see
row-level-security policies, grants, functions, triggers or sequences (the migrations create
them in SQL), nor CHECK constraints and an index's method, predicate or INCLUDE columns;
``tests/test_models_migrations.py`` compares those last two itself.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData
from sqlmodel import SQLModel

from hub.store import (  # noqa: F401  (register their tables)
    auth_models,
    change_models,
    models,
    webhook_models,
)

# PostGIS's own table, created by CREATE EXTENSION in the public schema: not the hub's to model.
# (Its other tables live in schemas of their own, topology and tiger, which Alembic does not
# look at unless told to include schemas; geometry_columns and the like are views, never
# reflected.)
POSTGIS_TABLES = frozenset({"spatial_ref_sys"})


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Everything but PostGIS's own tables (not even reflected)."""
    return not (type_ == "table" and name in POSTGIS_TABLES)


def target_metadata() -> MetaData:
    """Every table the models declare."""
    return SQLModel.metadata


# The comparison's options, shared by env.py and the test.
COMPARE_OPTIONS: dict[str, Any] = {
    "include_name": include_name,
    "compare_type": True,
    # PostgreSQL's defaults compare well: textually, else by evaluating both sides on the server
    # (clock_timestamp() matches textually, so it is never evaluated twice and found unequal).
    "compare_server_default": True,
}


def model_drift(connection: Connection, metadata: MetaData | None = None) -> list[Any]:
    """Alembic's differences between the database and the models (empty when they agree)."""
    context = MigrationContext.configure(connection, opts=COMPARE_OPTIONS)
    return list(compare_metadata(context, metadata if metadata is not None else target_metadata()))
