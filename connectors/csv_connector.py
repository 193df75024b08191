"""The ``csv`` connector kind: a CSV file and a TOML column mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from connectors.mapping import Mapping, load_mapping
from connectors.report import ConnectorReport
from connectors.run import CsvRun, RunOptions
from connectors.settings import ConnectorSettings


class CsvConnector:
    def __init__(self, mapping: Mapping, settings: ConnectorSettings) -> None:
        self.mapping = mapping
        self.settings = settings

    @classmethod
    def from_mapping_file(cls, path: Path, settings: ConnectorSettings) -> Self:
        return cls(load_mapping(path), settings)

    def run(self, source: Path | str, options: RunOptions) -> ConnectorReport:
        return CsvRun(Path(source), self.mapping, self.settings, options).run()
