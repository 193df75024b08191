"""Alembic environment: the URL comes from the hub settings (or the caller's config).

The models are the target metadata, compared as ``hub.store.schema_compare`` says, so that
``alembic revision --autogenerate`` drafts a migration from a change to the models (GeoAlchemy2's
helpers render geometry types and operations). The migrations stay the truth: a draft is
edited (row-level security, grants, what Alembic cannot see) before it is applied.
"""

from __future__ import annotations

from alembic import context
from geoalchemy2.alembic_helpers import render_item, writer
from sqlalchemy import create_engine

from hub.settings import get_settings
from hub.store.schema_compare import COMPARE_OPTIONS, target_metadata

config = context.config
# hub.store.migrate sets the URL; the alembic command line (pyproject's [tool.alembic], no ini
# file) leaves it to the settings
url = config.get_section(config.config_ini_section, {}).get("sqlalchemy.url")
url = url or get_settings().database_url

with create_engine(url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_item=render_item,
        process_revision_directives=writer,
        **COMPARE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()
