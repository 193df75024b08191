"""Create the database if it is missing and bring its schema to the newest revision."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hub.settings import Settings, get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def ensure_database(settings: Settings | None = None) -> bool:
    """Create the configured database when absent; True when it was created."""
    settings = settings or get_settings()
    params = conninfo_to_dict(settings.sync_database_url)
    name = str(params.get("dbname") or "postgres")
    admin = make_conninfo(settings.sync_database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    ensure_database(settings)
    command.upgrade(alembic_config(settings), "head")


def drop_database(settings: Settings) -> None:
    """Drop the configured database (tests use throw-away databases)."""
    name = str(conninfo_to_dict(settings.sync_database_url).get("dbname"))
    admin = make_conninfo(settings.sync_database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
