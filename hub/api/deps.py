"""FastAPI dependencies, as plain functions: the app's settings and a database session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from hub.settings import Settings
from hub.store.db import session_scope


def get_app_settings(request: Request) -> Settings:
    # The settings the app was built with (not get_settings()), so tests can run several apps.
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
