"""What an incident's row holds, computed from its members, for many incidents at once.

The rules are ``model``'s (``severity_of``, ``independent_sources``, the main type) and,
for corroboration, two sources that agree (``agreeing``); here they run as polars expressions
over a frame of members, one group per incident, so a batch's thousands of incidents cost a few
vectorised passes, not a Python loop.
"""

from __future__ import annotations

import polars as pl

from hub.fusion.incident.geodesy import EARTH_RADIUS_M
from hub.fusion.rules import Rules
from schemas.picture import CERTAINTY_ORDER, NOT_CREDIBLE, SEVERITY_ORDER

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


def summarise(members: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """One row per ``incident`` from its live members (a report frame, ``links.REPORT_SCHEMA``,
    with ``incident`` and ``category``): status, category (of the earliest member that has
    one), event_type, severity, certainty, verification (without a decision), sources,
    reports, communities (sorted), first and last observed_at, and ``members``, ``lon``,
    ``lat`` as lists by observed_at, then event_id. Ordered by incident id.

    Corroborated: two independent sources AGREE, i.e. two of its reports from different
    sources lie within ``rules.corroborate_within`` of the stricter of their types' distance
    and window of each other (``agreeing``): the count of sources alone would let two
    emergencies that share an incident's extent corroborate each other.

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
    agree = agreeing(live, rules)
    return (
        rows.join(_main_types(live), on="incident", how="left", maintain_order="left")
        .with_columns(
            pl.col("sev").replace_strict(_SEVERITY_OF, return_dtype=pl.String).alias("severity"),
            pl.col("cer").replace_strict(_CERTAINTY_OF, return_dtype=pl.String).alias("certainty"),
            pl.when(pl.col("incident").is_in(agree.implode()))
            .then(pl.lit("corroborated"))
            .otherwise(pl.lit("reported"))
            .alias("verification"),
        )
        .select(_SUMMARY_COLUMNS)
    )


def agreeing(live: pl.DataFrame, rules: Rules) -> pl.Series:
    """The incidents in which two reports of different sources agree (``summarise``). Only
    incidents with two sources or more are paired, so the work is that of their members."""
    several = live.filter(pl.col("source_key").n_unique().over("incident") >= 2)
    cols = several.select("incident", "source_key", "event_type", "observed_at", "lon", "lat")
    pairs = cols.join(cols, on="incident", suffix="_b").filter(
        pl.col("source_key") < pl.col("source_key_b")
    )
    if pairs.height == 0:
        return pl.Series("incident", [], dtype=pl.String)
    limits = _agreement_limits(pairs.select("event_type", "event_type_b").unique(), rules)
    pairs = pairs.join(limits, on=["event_type", "event_type_b"])
    phi1, phi2 = pl.col("lat").radians(), pl.col("lat_b").radians()
    s1 = ((phi2 - phi1) * 0.5).sin()
    s2 = ((pl.col("lon_b").radians() - pl.col("lon").radians()) * 0.5).sin()
    h = (s1 * s1 + phi1.cos() * phi2.cos() * s2 * s2).clip(upper_bound=1.0)
    metres = 2.0 * EARTH_RADIUS_M * h.sqrt().arcsin()
    dt = (pl.col("observed_at") - pl.col("observed_at_b")).dt.total_microseconds() / 1e6
    score = (metres / pl.col("distance")) ** 2 + (dt / pl.col("window")) ** 2
    within = rules.corroborate_within**2
    return pairs.filter(score <= within)["incident"].unique()


def _agreement_limits(types: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """(distance m, window s) within which two reports of a pair of types may agree: the
    STRICTER of the two types' limits (linking takes the larger, so that smoke reaches its
    fire; agreeing takes the smaller, so that an ambulance call beside a collision does not
    vouch for it); pairs that never link are left out."""
    rows = []
    for a, b in types.iter_rows():
        if rules.limits(a, b) is None:
            continue
        ra, rb = rules.rule(a), rules.rule(b)
        distance = min(ra.distance_m, rb.distance_m)
        rows.append((a, b, distance, min(ra.window, rb.window).total_seconds()))
    return pl.DataFrame(
        rows,
        schema={"event_type": pl.String, "event_type_b": pl.String, "distance": pl.Float64,
                "window": pl.Float64},
        orient="row",
    )  # fmt: skip


def _main_types(live: pl.DataFrame) -> pl.DataFrame:
    """The most frequent type; ties go to the type with the most severe report, then by name."""
    return (
        live.group_by("incident", "event_type")
        .agg(pl.len().alias("n"), pl.col("sev").max().alias("worst"))
        .sort(["incident", "n", "worst", "event_type"], descending=[False, True, True, False])
        .group_by("incident", maintain_order=True)
        .agg(pl.col("event_type").first())
    )
