"""The ``xlsx`` connector kind: a sheet of an .xlsx/.xlsm/.xls/.ods workbook and a TOML column
mapping (the CSV keys plus ``[xlsx] sheet``), incremental: rows sent before are skipped unless
they changed (``connectors.changes``)."""

from __future__ import annotations

from pathlib import Path

from connectors.csv_connector import MappedConnector, source_file
from connectors.report import ConnectorReport
from connectors.run import RunOptions, SourceRun
from connectors.sheet_source import Sheet


class XlsxConnector(MappedConnector):
    def run(self, source: Path | str | None, options: RunOptions) -> ConnectorReport:
        sheet = Sheet(source_file(source, "xlsx"), self.mapping)
        run = SourceRun(sheet, self.mapping, self.settings, options, kind="xlsx", incremental=True)
        return run.run()
