"""Give every event a known community (assign missing ones by polygon, or to the nearest within
``HUB_COMMUNITY_SNAP_M`` with ``properties.snapped_m``; flag unknown ones) and its grid cell."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

import numpy as np
import orjson
import polars as pl

from geo.assign import CommunityIndex
from geo.grids import GridIndex, h3_cell_ids

log = logging.getLogger(__name__)


class CommunityResolver:
    """Holds the community index, reloading it when an unknown id shows up (rate-limited).
    ``on_snap`` is told how many events of a batch were snapped to the nearest community."""

    def __init__(
        self,
        load: Callable[[], CommunityIndex],
        min_reload_s: float = 5.0,
        on_snap: Callable[[int], None] | None = None,
    ) -> None:
        self._load = load
        self._min_reload_s = min_reload_s
        self._on_snap = on_snap
        self._loaded_at = 0.0
        self.index = CommunityIndex.build([], [])
        self.reload()

    def reload(self) -> None:
        self.index = self._load()
        self._known = frozenset(self.index.ids)
        self._loaded_at = time.monotonic()
        log.info("communities loaded", extra={"communities": len(self.index)})

    def resolve(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(events with a known community, events whose community is unknown or unassignable)."""
        frame = self._fill_missing(frame)
        known = frame["community_id"].is_in(list(self._known)) & frame["community_id"].is_not_null()
        if not known.all() and time.monotonic() - self._loaded_at >= self._min_reload_s:
            self.reload()  # communities may have been imported since the last load
            frame = self._fill_missing(frame)
            known = (
                frame["community_id"].is_in(list(self._known)) & frame["community_id"].is_not_null()
            )
        return frame.filter(known), frame.filter(~known)

    def _fill_missing(self, frame: pl.DataFrame) -> pl.DataFrame:
        missing = frame["community_id"].is_null()
        if not missing.any() or len(self.index) == 0:
            return frame
        rows = np.flatnonzero(missing.to_numpy())
        placed = self.index.place_ids(frame["lon"].to_numpy()[rows], frame["lat"].to_numpy()[rows])
        filled = frame["community_id"].to_list()
        for row, (cid, _) in zip(rows, placed, strict=True):
            filled[row] = cid
        frame = frame.with_columns(pl.Series("community_id", filled, dtype=pl.String))
        snapped = [(int(row), m) for row, (_, m) in zip(rows, placed, strict=True) if m is not None]
        return _note_snapped(frame, snapped, self._on_snap) if snapped else frame


def _note_snapped(
    frame: pl.DataFrame, snapped: list[tuple[int, int]], on_snap: Callable[[int], None] | None
) -> pl.DataFrame:
    """Set ``properties.snapped_m`` (rounded metres) on the snapped rows. Only the few
    snapped rows are parsed and written again; the others keep their serialised properties."""
    properties = frame["properties"].to_list()
    for row, metres in snapped:
        props = orjson.loads(properties[row])
        props["snapped_m"] = metres
        properties[row] = orjson.dumps(props).decode()
    if on_snap is not None:
        on_snap(len(snapped))
    return frame.with_columns(pl.Series("properties", properties, dtype=pl.String))


class GridResolver:
    """Gives every event its grid cell: the imported cell of its community that contains it,
    else the H3 cell at ``resolution`` (communities without a grid, points outside theirs).

    Unlike an unknown community id, nothing in the stream says that a grid was imported, so
    the store's grid version is checked at most every ``min_check_s`` and the index reloaded
    when it changed: events of the first seconds after an import may still get H3 cells. A
    failed check keeps the current index: stale cells beat a stopped stream, and the sink
    waits out a database outage on its own.
    """

    def __init__(
        self,
        load: Callable[[], tuple[Hashable, GridIndex]],
        version: Callable[[], Hashable],
        resolution: int,
        min_check_s: float = 5.0,
    ) -> None:
        self._load = load
        self._version = version
        self.resolution = resolution
        self.min_check_s = min_check_s
        self._loaded_version, self.index = load()
        self._checked_at = time.monotonic()

    def refresh(self) -> None:
        """Reload the index if the store's grids changed since it was loaded."""
        self._checked_at = time.monotonic()
        try:
            if self._version() != self._loaded_version:
                self._loaded_version, self.index = self._load()
                log.info("grids reloaded", extra={"cells": len(self.index)})
        except Exception:
            log.warning("grid check failed; keeping the loaded grids", exc_info=True)

    def assign(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (with known communities) plus its ``grid_cell`` column."""
        if time.monotonic() - self._checked_at >= self.min_check_s:
            self.refresh()
        lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
        cells = self.index.assign(lon, lat, frame["community_id"].to_list())
        rest = np.flatnonzero(np.array([c is None for c in cells], dtype=bool))
        for row, cell in zip(
            rest.tolist(), h3_cell_ids(lon[rest], lat[rest], self.resolution), strict=True
        ):
            cells[row] = cell
        return frame.with_columns(pl.Series("grid_cell", cells, dtype=pl.String))
