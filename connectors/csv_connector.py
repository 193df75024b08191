"""The ``csv`` connector kind: a CSV file and a TOML column mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from connectors.mapping import Mapping, load_mapping
from connectors.report import ConnectorReport
from connectors.run import ConnectorConfigError, CsvRun, RunOptions
from connectors.settings import ConnectorSettings


class MappedConnector:
    """A connector kind configured by a TOML mapping (``connectors.mapping``)."""

    def __init__(self, mapping: Mapping, settings: ConnectorSettings) -> None:
        self.mapping = mapping
        self.settings = settings

    @classmethod
    def from_mapping_file(cls, path: Path, settings: ConnectorSettings) -> Self:
        return cls(load_mapping(path), settings)


class CsvConnector(MappedConnector):
    def run(self, source: Path | str | None, options: RunOptions) -> ConnectorReport:
        return CsvRun(source_file(source, "csv"), self.mapping, self.settings, options).run()


def source_file(source: Path | str | None, kind: str) -> Path:
    if source is None or not str(source):
        raise ConnectorConfigError(f"the {kind} kind reads a file: give its path as SOURCE")
    return Path(source)
