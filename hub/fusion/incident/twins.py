"""Exact repeats of a report, found so that correlation links and partitions them once
(``links.correlate_frame``): a storm repeats reports at one point and minute, and each repeat
would otherwise multiply the pairs."""

from __future__ import annotations

import numpy as np
import polars as pl

from hub.fusion.rules import Rules


def twins_of(
    reports: pl.DataFrame,
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
    rank: np.ndarray,
    refs: tuple[np.ndarray, np.ndarray],
    automated: list[str | None],
    rules: Rules,
) -> np.ndarray:
    """Per row, the earlier row (canonical order) it is a twin of; -1 for none. Twins are live,
    unpinned, take no part in refs, and share picture, type, automated source (or none) and
    the very point and instant, of a type that links with itself: so the later one links to
    everything the first does, tries the first's incident first (score 0, the older row)
    and is admitted there (its source already reported that point), and is never a seed. It
    changes nothing but its own row, which follows the first. ``points``: each row's instant
    (s), latitude and longitude (radians), as the partition reads them."""
    n = reports.height
    out = np.full(n, -1, dtype=np.int64)
    types = reports["event_type"]
    own = [t for t in types.unique().to_list() if rules.rule(t).correlate and rules.limits(t, t)]
    in_refs = np.zeros(n, dtype=bool)
    in_refs[refs[0]] = in_refs[refs[1]] = True
    eligible = (rank >= 0) & ~reports["pinned"].to_numpy() & ~in_refs & types.is_in(own).to_numpy()
    if eligible.sum() < 2:
        return out
    keys = ["status", "event_type", "source", "t", "phi", "lam"]
    frame = pl.DataFrame(
        {
            "row": np.arange(n),
            "rank": rank,
            "status": reports["status"],
            "event_type": types,
            "source": pl.Series(automated, dtype=pl.String),
            "t": points[0],
            "phi": points[1],
            "lam": points[2],
        }
    ).filter(pl.Series(eligible))
    found = frame.with_columns(
        pl.col("row").sort_by("rank").first().over(keys).alias("first")
    ).filter(pl.col("row") != pl.col("first"))
    out[found["row"].to_numpy()] = found["first"].to_numpy()
    return out
