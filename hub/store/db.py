"""The one place that opens database connections and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from sqlalchemy import Engine
from sqlmodel import Session, create_engine

from hub.settings import Settings, get_settings


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


def get_engine(settings: Settings | None = None) -> Engine:
    return _engine((settings or get_settings()).database_url)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(settings)) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def connect(settings: Settings | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """A raw psycopg connection, for COPY and other bulk work SQLAlchemy would slow down."""
    url = (settings or get_settings()).sync_database_url
    return psycopg.connect(url, autocommit=autocommit)
