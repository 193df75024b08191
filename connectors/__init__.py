"""Connectors: community data in, hub events out (through a durable outbox into Kafka).

The programmatic entry points:

- ``run_csv(path, mapping, settings, ...) -> ConnectorReport``: one CSV replay, end to end;
  ``settings`` a ``ConnectorSettings`` (the broker, topic, reporter key, state directory).
- ``convert_rows(rows, mapping, ...) -> Conversion``: the pure row -> event conversion.
- ``load_mapping(path) -> Mapping``: a TOML column mapping (every key: ``connectors.mapping``).
- ``connectors.registry.load_connector(kind)``: the kinds ``csv``, ``xlsx`` (``sheet_source``)
  and ``sql`` (``sql_source``); the last two are incremental (``changes``, ``cursor``).
- ``connectors.cap``: the ``cap`` kind (CAP alerts from a file, a drop folder or a feed;
  ``CapRun(...).poll(source, report)`` is what a long-running caller loops over).
"""

from connectors.csv_source import Conversion, Reject, SourceError, convert_rows, event_id_for
from connectors.mapping import Mapping, MappingError, load_mapping
from connectors.outbox import Outbox, OutboxBusy
from connectors.report import ConnectorReport
from connectors.run import RunOptions, run_csv
from connectors.settings import ConnectorSettings

__all__ = [
    "ConnectorReport",
    "ConnectorSettings",
    "Conversion",
    "Mapping",
    "MappingError",
    "Outbox",
    "OutboxBusy",
    "Reject",
    "RunOptions",
    "SourceError",
    "convert_rows",
    "event_id_for",
    "load_mapping",
    "run_csv",
]
