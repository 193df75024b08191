"""The one place that opens database connections and sessions.

Two roles: the owner (migrations, fusion, the CLI) and the API's role ``hub_api``, which row-level
security applies to. The API's pools say at connection start what they are for (``purpose``):
requests (None), ``authenticate`` or ``audit`` (see migration 0003_api_access).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Literal

import psycopg
from sqlalchemy import Engine
from sqlmodel import Session, create_engine

from hub.settings import Settings, get_settings

Purpose = Literal["authenticate", "audit"]


# JIT off for every connection of the hub: its queries are short, but row-level security (the
# API) and PostGIS functions (fusion's warning flags) inflate their estimated cost past
# jit_above_cost, and compiling then took 15-350 ms of a query that runs in a few.
NO_JIT = "-c jit=off"


def _api_options(purpose: Purpose | None) -> str:
    return NO_JIT + (f" -c hub.purpose={purpose}" if purpose is not None else "")


@lru_cache(maxsize=16)
def _engine(url: str, options: str | None = None) -> Engine:
    connect_args = {"options": options} if options is not None else {}
    return create_engine(
        url, pool_pre_ping=True, pool_size=8, max_overflow=8, connect_args=connect_args
    )


def get_engine(settings: Settings | None = None) -> Engine:
    """The owner's engine: not subject to row-level security."""
    return _engine((settings or get_settings()).database_url, NO_JIT)


def api_engine(settings: Settings, purpose: Purpose | None = None) -> Engine:
    """The API role's engine for one purpose; request sessions set their principal on it."""
    return _engine(settings.api_db_url, _api_options(purpose))


@contextmanager
def session_scope(settings: Settings | None = None, *, api: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error; ``api``: as the API role."""
    settings = settings or get_settings()
    engine = api_engine(settings) if api else get_engine(settings)
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def connect(
    settings: Settings | None = None,
    *,
    autocommit: bool = False,
    api_purpose: Purpose | None = None,
) -> psycopg.Connection:
    """A raw psycopg connection, for COPY and other bulk work SQLAlchemy would slow down; as
    the API role for ``api_purpose`` when one is given."""
    settings = settings or get_settings()
    if api_purpose is None:
        return psycopg.connect(settings.sync_database_url, autocommit=autocommit, options=NO_JIT)
    options = _api_options(api_purpose)
    return psycopg.connect(settings.sync_api_db_url, autocommit=autocommit, options=options)


async def connect_listener(settings: Settings) -> psycopg.AsyncConnection:
    """An autocommit connection as the API role, for LISTEN (the stream's wake-ups)."""
    return await psycopg.AsyncConnection.connect(
        settings.sync_api_db_url, autocommit=True, options=_api_options(None)
    )
