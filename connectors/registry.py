"""Connector kinds registered by name (pygeoapi-style): ``hub connector run KIND`` looks the
kind up here and imports its class only then, so one broken plugin cannot break the others.

A connector class is built from its mapping file and the settings, and runs one source (a
file's path; for ``sql`` a SQLAlchemy URL, or None for the mapping's ``[sql] url``):

    connector = load_connector("csv").from_mapping_file(Path("m.toml"), settings)
    report = connector.run("data.csv", RunOptions(...))

``source`` is a path, or for kinds that read from the network (``sql`` URLs, ``cap`` feeds)
a URL string.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, Self

from connectors.report import ConnectorReport
from connectors.run import RunOptions
from connectors.settings import ConnectorSettings
from hub.errors import NotFound

# kind -> "module:Class"
CONNECTORS: dict[str, str] = {
    "csv": "connectors.csv_connector:CsvConnector",
    "xlsx": "connectors.xlsx_connector:XlsxConnector",
    "sql": "connectors.sql_connector:SqlConnector",
    "cap": "connectors.cap.connector:CapConnector",
}


class Connector(Protocol):
    @classmethod
    def from_mapping_file(cls, path: Path, settings: ConnectorSettings) -> Self: ...

    def run(self, source: Path | str | None, options: RunOptions) -> ConnectorReport: ...


class UnknownConnector(NotFound, KeyError):
    def __str__(self) -> str:
        return f"unknown connector kind {self.args[0]!r}; known: {', '.join(sorted(CONNECTORS))}"


def kinds() -> list[str]:
    return sorted(CONNECTORS)


def load_connector(kind: str) -> type[Connector]:
    try:
        module_name, _, class_name = CONNECTORS[kind].partition(":")
    except KeyError:
        raise UnknownConnector(kind) from None
    cls: type[Connector] = getattr(importlib.import_module(module_name), class_name)
    return cls
