"""Alembic environment: the URL comes from the hub settings (or the caller's config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from hub.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url

with create_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
