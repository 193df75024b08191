"""The risk stage of fusion: the risk score and four-colour level of the grid cells the batch
touched, and of cells whose risk decays, in the batch's transaction (after the incident stage).

Recency is measured on the picture clock, never on the wall clock: ``picture_clock`` holds per
picture (actual, exercise, test) the latest observed_at fusion stored, and an incident's age is
that clock minus its last report. A replay of December 2018 thus shows the risk as it was in
December 2018, and replaying it twice gives the same cells. The clock never goes backwards, and
never further than ``stage.clock_lead`` beyond the database's clock (a device with a wrong year
would otherwise age every incident out of the picture at once).

Per batch, four statements and no per-row round trip:
1. advance each picture's clock to the latest observed_at of the batch's new events (from the
   batch's frame when it holds them, else read back);
2. the cells to re-score: the cells of the live members of the incidents the batch changed
   (``incident.grid_cells``, kept by the incident stage; a closed incident keeps its last),
   the cells of the reports it cancelled (they may have lost their only incident), and stored
   cells a minute of picture time old or more (decay), at most ``stage.decay_cells`` per
   picture, oldest first; with the level each has now;
3. the facts: every open, not refuted incident of the same picture, inside the horizon, with a
   live member in one of those cells (an incident counts in every cell it has a report in; the
   incident rows name their cells, so no member is read); scores and levels are computed in
   Python (``hub.fusion.risk``);
4. one upsert of the cells (COPY to a temporary table, INSERT ... ON CONFLICT), with the cell's
   polygon copied from ``grid_cell``, a new ``updated_seq``, ``level_since`` moved only when the
   level changes; blue cells with a negligible score, and cells whose grid cell was removed by a
   re-import, are deleted in the same statement.

Cost, measured on the real SFPD month (18,310 simulated reports, stages on, fresh database):
batches of 5,000 reports (~2,400 changed incidents, ~700 cells) take 55-90 ms here, the incident
stage before it ~300 ms; batches of 1,000 reports (~480 changed incidents) ~50 ms. The work
grows with the changed incidents and the incidents inside the horizon, never with the length of
the history.

Batches are serialised from insert to commit by the sink's sequence lock, so the levels read in
step 2 are still the stored ones when step 4 writes (several fusion workers need no more).

Cells are keyed by ``event.grid_cell``. An imported cell belongs to its community; an H3 cell
belongs to none, and is attributed to the community most of its live reports come from, so that
a community sees the risk of its own drills there too (row-level security: ``hub_sees_place``).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import psycopg

from hub.fusion.decode import observed_instant
from hub.fusion.risk import (
    IncidentFacts,
    RiskConfig,
    cell_score,
    contribution,
    negligible,
    next_level,
)
from hub.fusion.stages import Batch
from hub.store.frames import pg_array

log = logging.getLogger(__name__)

# A cell's score hardly moves in a minute of picture time (2 % at the shortest shipped
# half-life), while re-scoring every raised cell in every batch would cost more than the rest.
RESCORE_AFTER = timedelta(minutes=1)

Cell = tuple[str, str]  # (status, grid_cell)

# The latest observed_at per picture of the batch's new events: from the store (the ids in
# fusion_new), or given (from the batch's frame: no event read back).
_SEEN_STORED = """
    SELECT e.status, least(max(e.observed_at), now() + %(lead)s) AS at
    FROM fusion_new n JOIN event e ON e.event_id = n.event_id
    WHERE e.kind <> 'verification'  -- an operator's word, stamped when decided: not world time
    GROUP BY e.status
"""
_SEEN_GIVEN = """
    SELECT status, least(at, now() + %(lead)s) AS at
    FROM unnest(%(status)s::text[], %(at)s::timestamptz[]) AS s(status, at)
"""
_CLOCK = """
WITH seen AS ({seen}), moved AS (
    INSERT INTO picture_clock AS k (status, at) SELECT status, at FROM seen
    ON CONFLICT (status) DO UPDATE SET at = EXCLUDED.at WHERE EXCLUDED.at > k.at
    RETURNING k.status, k.at
)
SELECT status, at FROM moved
UNION ALL
SELECT status, at FROM picture_clock WHERE status NOT IN (SELECT status FROM moved)
"""

# Per picture one index range scan of risk_cell (status, as_of), the oldest first. The bound is
# per picture: a drill's backlog never delays the decay of the real picture.
_CANDIDATES = """
WITH changed AS (
    SELECT i.status, c.grid_cell
    FROM incident i CROSS JOIN LATERAL unnest(i.grid_cells) AS c(grid_cell)
    WHERE i.id = ANY(%(changed)s::uuid[])
    UNION
    SELECT * FROM unnest(%(vacated_status)s::text[], %(vacated_cell)s::text[])
), decaying AS (
    SELECT d.status, d.grid_cell
    FROM picture_clock k CROSS JOIN LATERAL (
        SELECT c.status, c.grid_cell, c.as_of FROM risk_cell c
        WHERE c.status = k.status AND c.as_of <= k.at - %(after)s
        ORDER BY c.as_of LIMIT %(limit)s
    ) d
), cells AS (
    SELECT status, grid_cell FROM changed UNION SELECT status, grid_cell FROM decaying
)
SELECT s.status, s.grid_cell, c.level
FROM cells s LEFT JOIN risk_cell c ON c.status = s.status AND c.grid_cell = s.grid_cell
"""

# The live incidents (open, not refuted, inside the horizon of their picture) with the cells of
# their live members (kept on the incident's row by the incident stage), then those in the cells
# asked for. Incident-first, so the work is bounded by the horizon however long the history (a
# cell-first search would read every event ever reported in the cells); the CTE is materialised
# so that the planner cannot start from the cells after all. ``{live}`` is one range of the
# index (status, last_observed_at) per picture (``_live``).
_FACTS = """
WITH members AS MATERIALIZED (
    SELECT i.status, c.grid_cell, c.community_id, c.reports, i.id, i.severity, i.certainty,
        i.verification, i.event_type, i.last_observed_at
    FROM incident i
    CROSS JOIN LATERAL unnest(i.grid_cells, i.cell_communities, i.cell_reports)
        AS c(grid_cell, community_id, reports)
    WHERE ({live}) AND i.state = 'open' AND i.verification <> 'refuted'
), cells AS (
    SELECT DISTINCT status, grid_cell
    FROM unnest(%(status)s::text[], %(cell)s::text[]) AS c(status, grid_cell)
)
SELECT m.* FROM members m JOIN cells c ON c.status = m.status AND c.grid_cell = m.grid_cell
"""


def _live(pictures: int) -> str:
    return " OR ".join(
        f"(i.status = %(picture_{n})s AND i.last_observed_at >= %(since_{n})s)"
        for n in range(pictures)
    )


_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS risk_stage (
    status text, grid_cell text, community_id text, score double precision, level text,
    incidents integer, as_of timestamptz, forget boolean
) ON COMMIT DELETE ROWS
"""

_COPY_STAGE = (
    "COPY risk_stage (status, grid_cell, community_id, score, level, incidents, as_of, forget)"
    " FROM STDIN"
)

_UPSERT = """
WITH gone AS (
    DELETE FROM risk_cell c USING risk_stage s
    WHERE c.status = s.status AND c.grid_cell = s.grid_cell
        AND (s.forget OR NOT EXISTS (SELECT 1 FROM grid_cell g WHERE g.id = s.grid_cell))
    RETURNING 1
), put AS (
    INSERT INTO risk_cell AS c (status, grid_cell, community_id, score, level, level_since,
        incidents, as_of, geom, updated_seq)
    SELECT s.status, s.grid_cell, coalesce(g.community_id, s.community_id), s.score, s.level,
        s.as_of, s.incidents, s.as_of, g.geom, nextval('risk_update_seq')
    FROM risk_stage s JOIN grid_cell g ON g.id = s.grid_cell
    WHERE NOT s.forget
    ORDER BY s.status, s.grid_cell
    ON CONFLICT (status, grid_cell) DO UPDATE SET
        community_id = EXCLUDED.community_id, score = EXCLUDED.score, level = EXCLUDED.level,
        level_since = CASE WHEN c.level = EXCLUDED.level THEN c.level_since
                           ELSE EXCLUDED.level_since END,
        incidents = EXCLUDED.incidents, as_of = EXCLUDED.as_of, geom = EXCLUDED.geom,
        updated_seq = EXCLUDED.updated_seq
    RETURNING 1
)
SELECT (SELECT count(*) FROM put), (SELECT count(*) FROM gone)
"""


@dataclass
class RiskCounts:
    clocks: dict[str, datetime] = field(default_factory=dict)  # picture -> its clock
    rescored: int = 0  # cells whose incidents changed, and cells due for decay
    stored: int = 0  # cells inserted or updated
    deleted: int = 0


@dataclass
class _Cell:
    """What one cell's re-scoring gathers from the facts."""

    incidents: dict[uuid.UUID, IncidentFacts] = field(default_factory=dict)
    communities: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ScoredCell:
    status: str
    grid_cell: str
    community_id: str | None  # of an H3 cell: where most of its live reports come from
    score: float
    level: str
    incidents: int  # those that count (contribution > 0)
    as_of: datetime
    forget: bool  # blue with a negligible score: the row goes


class RiskStage:
    """Keeps ``risk_cell`` current, batch by batch (not thread-safe: one per sink)."""

    name = "risk"

    def __init__(self, cfg: RiskConfig) -> None:
        self.cfg = cfg

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_CREATE_STAGE)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch | None = None) -> RiskCounts:
        """Call inside the batch's transaction, after the incident stage."""
        counts = RiskCounts()
        latest = _latest(batch)
        seen = _SEEN_STORED if latest is None else _SEEN_GIVEN
        params = {"lead": self.cfg.clock_lead, **(latest or {})}
        counts.clocks = dict(conn.execute(_CLOCK.format(seen=seen), params).fetchall())
        changed = sorted(batch.changed_incidents) if batch is not None else []
        vacated = sorted(batch.vacated_cells) if batch is not None else []
        previous = self._candidates(conn, changed, vacated)
        counts.rescored = len(previous)
        if not previous:
            return counts
        facts = self._facts(conn, previous, counts.clocks)
        scored = [
            cell
            for key, level in previous.items()
            if (cell := self.score(key, level, facts.get(key), counts.clocks)) is not None
        ]
        counts.stored, counts.deleted = _upsert(conn, scored)
        return counts

    def _candidates(
        self, conn: psycopg.Connection[Any], changed: list[str], vacated: list[Cell]
    ) -> dict[Cell, str | None]:
        """The cells to re-score, each with its stored level (None: not stored)."""
        params = {
            "changed": pg_array(changed),
            "vacated_status": [status for status, _ in vacated],
            "vacated_cell": [cell for _, cell in vacated],
            "after": RESCORE_AFTER,
            "limit": self.cfg.decay_cells,
        }
        rows = conn.execute(_CANDIDATES, params).fetchall()
        return {(status, cell): level for status, cell, level in rows}

    def _facts(
        self, conn: psycopg.Connection[Any], cells: Iterable[Cell], clocks: dict[str, datetime]
    ) -> dict[Cell, _Cell]:
        keys = list(cells)
        pictures = sorted({status for status, _ in keys} & clocks.keys())
        found: defaultdict[Cell, _Cell] = defaultdict(_Cell)
        if not pictures:
            return found
        params: dict[str, Any] = {
            "status": [status for status, _ in keys],
            "cell": [cell for _, cell in keys],
        }
        for n, picture in enumerate(pictures):
            params[f"picture_{n}"] = picture
            params[f"since_{n}"] = clocks[picture] - self.cfg.horizon
        # Never a generic plan: the planner must see the horizon's dates to size the live set.
        rows = conn.execute(_FACTS.format(live=_live(len(pictures))), params, prepare=False)
        for status, cell, community, reports, incident, *facts in rows:
            gathered = found[(status, cell)]
            gathered.incidents[incident] = IncidentFacts(*facts)
            gathered.communities[community] += reports
        return found

    def score(
        self,
        key: Cell,
        previous: str | None,
        gathered: _Cell | None,
        clocks: dict[str, datetime],
    ) -> ScoredCell | None:
        """The cell's new row; None when there is nothing to write (a fresh cell with nothing
        to show, or a picture without a clock)."""
        status, cell = key
        as_of = clocks.get(status)
        if as_of is None:
            log.warning("risk of %s not scored: picture %s has no clock", cell, status)
            return None
        gathered = gathered or _Cell()
        weights = [contribution(f, as_of, self.cfg) for f in gathered.incidents.values()]
        score = cell_score(weights)
        level = next_level(previous, score, self.cfg)
        forget = negligible(level, score, self.cfg)
        if forget and previous is None:
            return None
        # the most frequent community; ties to the smallest name, so a replay gives the same
        community = min(gathered.communities.items(), key=lambda kv: (-kv[1], kv[0]), default=None)
        return ScoredCell(
            status=status,
            grid_cell=cell,
            community_id=community[0] if community else None,
            score=score,
            level=level,
            incidents=sum(1 for w in weights if w > 0),
            as_of=as_of,
            forget=forget,
        )


def _latest(batch: Batch | None) -> dict[str, list[Any]] | None:
    """Per picture, the latest observed_at of the batch's new events (not verifications), from
    its frame; None when the frame is not the batch (the store is asked)."""
    if batch is None or batch.frame is None or not batch.all_new or batch.frame.height == 0:
        return None
    latest = (
        batch.frame.filter(pl.col("kind") != "verification")
        .group_by("status")
        .agg(observed_instant().max())
        .sort("status")
    )
    return {"status": latest["status"].to_list(), "at": latest["observed_at"].to_list()}


def _upsert(conn: psycopg.Connection[Any], cells: list[ScoredCell]) -> tuple[int, int]:
    """All cells in one statement; returns (stored, deleted)."""
    if not cells:
        return 0, 0
    with conn.cursor() as cur:
        with cur.copy(_COPY_STAGE) as copy:
            for c in cells:
                copy.write_row(
                    (
                        c.status,
                        c.grid_cell,
                        c.community_id,
                        c.score,
                        c.level,
                        c.incidents,
                        c.as_of,
                        c.forget,
                    )
                )
        row = cur.execute(_UPSERT).fetchone()
        cur.execute("TRUNCATE risk_stage")  # a second batch in one transaction starts empty
    stored, deleted = row if row is not None else (0, 0)
    missing = sum(1 for c in cells if not c.forget) - stored
    if missing:
        log.warning("risk of %d cells not stored: their grid cells are gone (re-import)", missing)
    return stored, deleted
