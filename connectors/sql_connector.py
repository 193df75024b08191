"""The ``sql`` connector kind: a community database polled with an incremental cursor
(``[sql] url, query, cursor_column``); new and changed rows are sent, each once
(``connectors.sql_source``, ``connectors.changes``)."""

from __future__ import annotations

from pathlib import Path

from connectors.csv_connector import MappedConnector
from connectors.report import ConnectorReport
from connectors.run import ConnectorConfigError, RunOptions, SourceRun
from connectors.sql_source import SqlQuery


class SqlConnector(MappedConnector):
    def run(self, source: Path | str | None, options: RunOptions) -> ConnectorReport:
        spec = self.mapping.sql
        if spec is None:
            raise ConnectorConfigError("the sql kind needs a [sql] table in the mapping")
        url = str(source) if source else spec.url
        if not url:
            raise ConnectorConfigError(
                "give the database as SOURCE (a SQLAlchemy URL) or [sql] url"
            )
        query = SqlQuery(url, self.mapping, spec)
        run = SourceRun(query, self.mapping, self.settings, options, kind="sql", incremental=True)
        return run.run()
