"""Give every event a known community: assign missing ones by polygon, flag unknown ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import polars as pl

from geo.assign import CommunityIndex

log = logging.getLogger(__name__)


class CommunityResolver:
    """Holds the community index, reloading it when an unknown id shows up (rate-limited)."""

    def __init__(self, load: Callable[[], CommunityIndex], min_reload_s: float = 5.0) -> None:
        self._load = load
        self._min_reload_s = min_reload_s
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
        ids = self.index.assign_ids(frame["lon"].to_numpy()[rows], frame["lat"].to_numpy()[rows])
        filled = frame["community_id"].to_list()
        for row, cid in zip(rows, ids, strict=True):
            filled[row] = cid
        return frame.with_columns(pl.Series("community_id", filled, dtype=pl.String))
