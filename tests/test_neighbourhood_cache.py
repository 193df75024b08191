"""The neighbourhood cache of the incident stage: what a committed batch wrote comes back, a
rolled-back batch leaves nothing, whole neighbourhoods are evicted, and another writer of the
incidents empties it. Its effect on the picture (none) is checked end to end by the crash and
arrival-order tests, which run the worker with it."""

from __future__ import annotations

import polars as pl
import psycopg

from hub.fusion.incident.cache import NeighbourhoodCache
from hub.fusion.incident.report_rows import EMPTY_REPORTS
from hub.settings import Settings
from hub.store.db import connect


def _rows(neighbourhood: str, event_ids: tuple[str, ...]) -> pl.DataFrame:
    base: dict[str, list[str | None]] = {c: [None] * len(event_ids) for c in EMPTY_REPORTS.columns}
    base |= {"event_id": list(event_ids), "neighbourhood": [neighbourhood] * len(event_ids)}
    return pl.DataFrame(base, schema=EMPTY_REPORTS.schema)


def ids(frame: pl.DataFrame) -> set[str]:
    return set(frame["event_id"].to_list())


def committed(cache: NeighbourhoodCache, conn: psycopg.Connection, *staged: pl.DataFrame) -> None:
    for frame in staged:
        cache.stage([], frame)
    cache.before_commit(conn)
    cache.after_commit(True)


def test_what_a_committed_batch_wrote_comes_back(hub_settings: Settings) -> None:
    cache = NeighbourhoodCache(EMPTY_REPORTS)
    with connect(hub_settings, autocommit=True) as conn:
        committed(cache, conn, _rows("A", ("a1", "a2")), _rows("B", ("b1",)))
        hit, missing = cache.take(["A", "C"])
        assert ids(hit) == {"a1", "a2"} and missing == ["C"]
        assert list(hit.columns) == list(EMPTY_REPORTS.columns)
        # A is partitioned again into A and D: A's old rows go, the new ones come
        cache.stage(["A"], pl.concat([_rows("A", ("a1",)), _rows("D", ("a2", "d1"))]))
        cache.before_commit(conn)
        cache.after_commit(True)
        assert ids(cache.take(["A", "B", "D"])[0]) == {"a1", "a2", "d1", "b1"}
        assert cache.rows == 4


def test_a_rolled_back_batch_leaves_nothing(hub_settings: Settings) -> None:
    cache = NeighbourhoodCache(EMPTY_REPORTS)
    with connect(hub_settings, autocommit=True) as conn:
        committed(cache, conn, _rows("A", ("a1",)))
        cache.stage(["A"], _rows("A", ("a1", "a9")))
        cache.after_commit(False)
    assert cache.rows == 0 and cache.take(["A"])[1] == ["A"]


def test_whole_neighbourhoods_are_evicted_oldest_first(hub_settings: Settings) -> None:
    cache = NeighbourhoodCache(EMPTY_REPORTS, max_rows=5)
    with connect(hub_settings, autocommit=True) as conn:
        committed(cache, conn, _rows("A", ("a1", "a2", "a3")))
        committed(cache, conn, _rows("B", ("b1", "b2")))
        committed(cache, conn, _rows("C", ("c1", "c2")))
    hit, missing = cache.take(["A", "B", "C"])
    assert missing == ["A"] and ids(hit) == {"b1", "b2", "c1", "c2"}


def test_another_writer_of_the_incidents_empties_it(hub_settings: Settings) -> None:
    cache = NeighbourhoodCache(EMPTY_REPORTS)
    with connect(hub_settings, autocommit=True) as conn:
        committed(cache, conn, _rows("A", ("a1",)))
        cache.check(conn)  # nothing else wrote: kept
        assert cache.rows == 1
        conn.execute("SELECT nextval('incident_update_seq')")  # e.g. hub fusion recluster
        cache.check(conn)
        assert cache.rows == 0 and cache.take(["A"])[1] == ["A"]
