"""What an incident's row holds, computed from its members, for many incidents at once.

The rules are ``correlate``'s (``severity_of``, ``independent_sources``, ``verification_state``,
the main type); here they run as polars expressions over a frame of members, one group per
incident, so a batch's thousands of incidents cost a few vectorised passes, not a Python loop.
"""

from __future__ import annotations

import polars as pl

from hub.fusion.correlate import CERTAINTY_ORDER, NOT_CREDIBLE, SEVERITY_ORDER

# Rank = how serious (or certain): higher is more.
_SEVERITY_RANK = {word: len(SEVERITY_ORDER) - i for i, word in enumerate(SEVERITY_ORDER)}
_CERTAINTY_RANK = {word: len(CERTAINTY_ORDER) - i for i, word in enumerate(CERTAINTY_ORDER)}
_SEVERITY_OF = {rank: word for word, rank in _SEVERITY_RANK.items()}
_CERTAINTY_OF = {rank: word for word, rank in _CERTAINTY_RANK.items()}


_SUMMARY_COLUMNS = [
    "incident", "status", "category", "event_type", "severity", "certainty", "verification",
    "sources", "reports", "communities", "first_observed_at", "last_observed_at", "members",
    "lon", "lat",
]  # fmt: skip


def summarise(members: pl.DataFrame) -> pl.DataFrame:
    """One row per ``incident`` from its live members (a report frame, ``links.REPORT_SCHEMA``,
    with ``incident`` and ``category``): status, category (of the earliest member that has
    one), event_type, severity, certainty, verification (without a decision), sources,
    reports, communities (sorted), first and last observed_at, and ``members``, ``lon``,
    ``lat`` as lists by observed_at, then event_id. Ordered by incident id.

    Raises ValueError when an incident mixes pictures (a caller's bug: they never link).
    """
    live = (
        members.filter(~pl.col("cancelled"))
        .with_columns(
            pl.col("severity").replace_strict(_SEVERITY_RANK, return_dtype=pl.Int8).alias("sev"),
            pl.col("certainty").replace_strict(_CERTAINTY_RANK, return_dtype=pl.Int8).alias("cer"),
            (~pl.col("certainty").is_in(list(NOT_CREDIBLE))).alias("credible"),
        )
        .sort("incident", "observed_at", "event_id")
    )
    rows = live.group_by("incident", maintain_order=True).agg(
        pl.col("status").first(),
        pl.col("status").n_unique().alias("pictures"),
        pl.col("category").drop_nulls().first(),
        pl.coalesce(pl.col("sev").filter(pl.col("credible")).max(), pl.col("sev").max()),
        pl.col("cer").max(),
        pl.col("source_key").n_unique().alias("sources"),
        pl.len().alias("reports"),
        pl.col("community_id").drop_nulls().unique().sort().alias("communities"),
        pl.col("observed_at").first().alias("first_observed_at"),
        pl.col("observed_at").max().alias("last_observed_at"),
        pl.col("event_id").alias("members"),
        pl.col("lon"),
        pl.col("lat"),
    )
    mixed = rows.filter(pl.col("pictures") > 1)
    if mixed.height:
        raise ValueError(f"incident {mixed['incident'][0]} mixes pictures")
    return (
        rows.join(_main_types(live), on="incident", how="left", maintain_order="left")
        .with_columns(
            pl.col("sev").replace_strict(_SEVERITY_OF, return_dtype=pl.String).alias("severity"),
            pl.col("cer").replace_strict(_CERTAINTY_OF, return_dtype=pl.String).alias("certainty"),
            pl.when(pl.col("sources") >= 2)
            .then(pl.lit("corroborated"))
            .otherwise(pl.lit("reported"))
            .alias("verification"),
        )
        .select(_SUMMARY_COLUMNS)
    )


def _main_types(live: pl.DataFrame) -> pl.DataFrame:
    """The most frequent type; ties go to the type with the most severe report, then by name."""
    return (
        live.group_by("incident", "event_type")
        .agg(pl.len().alias("n"), pl.col("sev").max().alias("worst"))
        .sort(["incident", "n", "worst", "event_type"], descending=[False, True, True, False])
        .group_by("incident", maintain_order=True)
        .agg(pl.col("event_type").first())
    )
