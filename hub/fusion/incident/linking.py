"""What correlation decides for a batch, before anything of it is written (no database: a
plan runs it beside the insert): the batch's reports and every live member of the
neighbourhoods they touch partitioned (``links.correlate_frame``), the reports that moved, the
incidents that lost their id and where their reports went, and the rows of every incident that
changed (``incident_rows``)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hub.fusion.incident.incident_rows import incident_rows
from hub.fusion.incident.links import correlate_frame
from hub.fusion.rules import Rules


def link(
    new: pl.DataFrame,
    stored: pl.DataFrame,
    reclustered: pl.DataFrame,
    touched: set[str],
    rules: Rules,
) -> Linked:
    """Correlation of the batch's reports with every live member of the neighbourhoods
    they touch (``stored``, and ``reclustered`` after cancels and splits), and what it
    changes; no database (a plan runs it beside the insert). ``touched``: incidents
    already changed (by cancels and splits)."""
    new = _follow_pinned(new, stored)
    members = pl.concat([stored, reclustered, new]).unique(
        "event_id", keep="last", maintain_order=True
    )
    members = members.with_columns(correlate_frame(members, rules))
    assigned = members.filter(pl.col("incident").is_not_null())
    arrived = set(new["event_id"].to_list())
    was = assigned.filter(pl.col("prior").is_not_null())
    moved = was.filter(
        (pl.col("incident") != pl.col("prior")) | (pl.col("component") != pl.col("neighbourhood"))
    )
    alive = set(assigned["incident"].unique().to_list())
    moves = _successors(was, alive)
    changed = touched | set(moved["incident"].to_list()) | set(moved["prior"].to_list())
    changed |= set(assigned.filter(pl.col("prior").is_null())["incident"].to_list())
    changed |= set(moves.values())
    fresh = assigned.filter(pl.col("incident").is_in(list(changed & alive)))
    return Linked(
        assigned=assigned,
        arrived=arrived,
        moved=moved.select("event_id", "incident", "component"),
        moves=moves,
        touched=changed & alive,
        fresh=incident_rows(fresh, arrived, rules),
        closed=sorted(touched - alive - set(moves)),
        replaced=frozenset(members["neighbourhood"].drop_nulls().to_list()),
    )


@dataclass(frozen=True)
class Linked:
    """What correlation decided for a batch, before anything of it is written."""

    assigned: pl.DataFrame  # every partitioned report (stored and new) with its incident
    arrived: set[str]  # the batch's reports
    moved: pl.DataFrame  # stored reports whose incident or neighbourhood changed
    moves: dict[str, str]  # incidents that lost their id -> where most of their members went
    touched: set[str]  # incidents whose members changed (all rebuilt from ``fresh``)
    fresh: pl.DataFrame  # the rows of the touched incidents
    closed: list[str]  # incidents left without a live member
    replaced: frozenset[str]  # the stored neighbourhoods partitioned again
    # A plan's: the ids of the batch's reports it took as new (all but those stored before).
    batch_ids: frozenset[str] = frozenset()


def _follow_pinned(new: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """An update of a report an operator split out is pinned too: it joins that report's
    incident (by its refs) and never anything else."""
    pinned = stored.filter(pl.col("pinned"))["event_id"].to_list()
    if not pinned:
        return new
    follows = pl.col("refs").list.eval(pl.element().is_in(pinned)).list.any()
    return new.with_columns((pl.col("pinned") | follows).alias("pinned"))


def _successors(stored: pl.DataFrame, alive: set[str]) -> dict[str, str]:
    """Prior incidents that no longer exist -> the incident that took most of their members
    (ties: the older id). ``stored``: the stored reports with ``prior`` and ``incident``."""
    gone = (
        stored.filter(~pl.col("prior").is_in(list(alive)))
        .group_by("prior", "incident")
        .agg(pl.len().alias("n"))
        .sort(["prior", "n", "incident"], descending=[False, True, False])
        .group_by("prior", maintain_order=True)
        .agg(pl.col("incident").first())
    )
    return dict(gone.iter_rows())
