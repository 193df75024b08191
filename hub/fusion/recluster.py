"""``hub fusion recluster``: every stored neighbourhood partitioned again, in one transaction.

Fusion keeps the picture a function of the set of reports under the rules it runs with. When
the rules change (``config/correlation.toml``), or after the upgrade from the chaining model
(migration 0008 names each old incident's reports as one neighbourhood and leaves the incident
as it was until a batch touches it), the stored picture no longer is. This makes it so again:
every live report is read, the neighbourhoods and their incidents are computed anew, what
changed is written (an id that disappears stays as an alias of the incident that took most of
its reports), and the changed incidents' warning flags and risk cells follow. It holds fusion's
sequence lock, so a running fusion worker waits for it instead of interleaving with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from hub.fusion.changes import ChangeStage
from hub.fusion.incident.report_rows import LIVE_MEMBERS, STORED_SCHEMA, as_reports
from hub.fusion.incident.stage import IncidentStage
from hub.fusion.risk import RiskConfig
from hub.fusion.risk_stage import RiskStage
from hub.fusion.rules import Rules
from hub.fusion.sink import CREATE_NEW, EVENT_SEQ_LOCK
from hub.fusion.stages import Batch, Stage
from hub.fusion.warnings import WarningFlagStage
from hub.settings import Settings
from hub.store.frames import read_frame

_OPEN = "SELECT count(*) FROM incident WHERE state = 'open'"


@dataclass(frozen=True)
class Reclustered:
    reports: int  # live reports partitioned
    open_before: int  # open incidents before and after
    open_after: int
    changed: int  # incidents whose members changed (rebuilt)
    renamed: int  # incident ids that disappeared (kept as aliases)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def recluster(conn: psycopg.Connection[Any], settings: Settings) -> Reclustered:
    """Partition every stored neighbourhood under the rules of ``settings`` and write what
    changed, in one transaction of ``conn`` (not in autocommit)."""
    stage = IncidentStage(Rules.load(settings.correlation_rules))
    later: list[Stage] = [
        WarningFlagStage(settings.neighbour_distance_m),
        RiskStage(RiskConfig.load(settings.risk_rules)),
        ChangeStage(),
    ]
    with conn.transaction():
        conn.execute(CREATE_NEW)
        for s in (stage, *later):
            s.prepare(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_SEQ_LOCK,))
        before = _open(conn)
        stored = as_reports(read_frame(conn, LIVE_MEMBERS, {}, STORED_SCHEMA))
        counts = stage.recluster(conn, stored)
        batch = Batch(changed_incidents=set(counts.touched))
        for s in later:
            s.apply(conn, batch)
        return Reclustered(stored.height, before, _open(conn), len(counts.touched), counts.merged)


def _open(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_OPEN).fetchone()
    return int(row[0]) if row else 0
