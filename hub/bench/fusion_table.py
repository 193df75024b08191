"""``hub bench fusion``'s targets, verdicts and table, for a pipeline run and an in-process one.

Targets (issue 11's acceptance), per variant: F1 (``variants.f1_target``: 0.95 or 0.92), the
hub above the naive baseline (by 0.02 at the defaults, the README's "clearly above"; at all
elsewhere), false corroboration <= 2 %; and the cost of correlation in the pipeline.
"""

from __future__ import annotations

from typing import Any

from hub.bench.fusion_quality import f1_target
from hub.bench.report import Row, Target

COST = Target(80, unit=" %")  # issue 11: the picture at (nearly) the skeleton's pace
CLEARLY_ABOVE = Target(0.02, decimals=3)
ABOVE = Target(0.001, decimals=3)  # above at all: a tie to the third decimal is no win
FALSE_CORROBORATION = Target(2, at_least=False, unit=" %")


def variant_targets(variant: str) -> dict[str, Target]:
    return {
        "f1": Target(f1_target(variant), decimals=2),
        "f1_over_baseline": CLEARLY_ABOVE if variant == "default" else ABOVE,
        "false_corroboration_pct": FALSE_CORROBORATION,
    }


def variant_measured(q: dict[str, Any]) -> dict[str, float]:
    return {
        "f1": q["hub"]["f1"],
        "f1_over_baseline": q["f1_over_baseline"],
        "false_corroboration_pct": 100 * q["hub"]["false_corroboration"],
    }


def verdicts(
    quality: dict[str, Any], cost: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """(measured, targets, passed) for the JSON, flat: the default variant's figures under
    their own names (as before there were variants), then ``"<variant>: <figure>"`` for every
    variant run, and the cost."""
    default = quality.get("default")
    measured: dict[str, Any] = {
        "f1": default["hub"]["f1"] if default else None,
        "f1_over_baseline": default["f1_over_baseline"] if default else None,
    }
    targets = {"f1": Target(f1_target("default"), decimals=2), "f1_over_baseline": CLEARLY_ABOVE}
    for name, q in quality.items():
        figures, bars = variant_measured(q), variant_targets(name)
        measured |= {f"{name}: {k}": v for k, v in figures.items()}
        targets |= {f"{name}: {k}": bars[k] for k in figures}
    if cost is not None:
        measured["cost_ratio_pct"], targets["cost_ratio_pct"] = cost["ratio_pct"], COST
    passed = {k: targets[k].met(v) for k, v in measured.items()}
    return measured, {k: t.as_json() for k, t in targets.items()}, passed


def table_rows(result: dict[str, Any]) -> list[Row]:
    rows = [row for name, q in result["quality"].items() for row in quality_rows(name, q)]
    return rows + (_cost_rows(result["cost"]) if result.get("cost") else [])


def quality_rows(name: str, q: dict[str, Any]) -> list[Row]:
    """One variant: the hub beside the baseline, against the variant's targets."""
    hub, base = q["hub"], q["baseline"]
    bars, figures = variant_targets(name), variant_measured(q)
    rows = [
        Row(name, "hub precision / recall", f"{hub['precision']:.3f} / {hub['recall']:.3f}"),
        Row(name, "hub F1 (B-cubed)", f"{hub['f1']:.3f}", bars["f1"], figures["f1"]),
        Row(
            name,
            "naive baseline F1 (hub - baseline)",
            f"{base['f1']:.3f} ({q['f1_over_baseline']:+.3f})",
            bars["f1_over_baseline"],
            figures["f1_over_baseline"],
        ),
        Row(
            name,
            "false corroboration (baseline)",
            f"{hub['false_corroboration']:.1%} ({base['false_corroboration']:.1%})",
            bars["false_corroboration_pct"],
            figures["false_corroboration_pct"],
        ),
        Row(
            name,
            "corroborated with >1 true incident (baseline)",
            f"{hub['mixed_corroborated']:.1%} ({base['mixed_corroborated']:.1%})",
        ),
        Row(
            name,
            "corroborated share (true)",
            f"{hub['corroborated_share']:.1%} ({hub['true_corroborated_share']:.1%})",
        ),
        Row(name, "largest incident: reports, true incidents, purity", _largest(hub)),
        Row(
            name,
            "incidents of >= 10 reports (true)",
            f"{hub['incidents_10_plus']:,} ({hub['true_incidents_10_plus']:,})",
        ),
        Row(
            name,
            "incidents / 1,000 reports (true)",
            f"{hub['incidents_per_1000_reports']:.0f}"
            f" ({hub['true_incidents_per_1000_reports']:.0f})",
        ),
    ]
    return rows + _pipeline_rows(name, q)


def _largest(figures: dict[str, Any]) -> str:
    big = figures["largest_incident"]
    return (
        f"{big['reports']}, {big['true_incidents']}, {big['purity']:.2f}"
        f" (true largest {figures['true_largest_incident']})"
    )


def _pipeline_rows(name: str, q: dict[str, Any]) -> list[Row]:
    """What only a run through the pipeline can check (in process nothing is stored)."""
    if "stored" not in q:
        return []
    return [
        Row(
            name,
            "reports stored",
            f"{q['stored']:,} of {q['hub']['reports']:,}",
            check=q["stored"] == q["hub"]["reports"],
        ),
        Row(
            name,
            "members without event / incident",
            "{} / {}".format(*q["orphan_reports"]),
            check=q["orphan_reports"] == [0, 0],
        ),
    ]


def _cost_rows(cost: dict[str, Any]) -> list[Row]:
    return [
        Row("cost", "skeleton (events only), median ev/s", f"{cost['skeleton_median_eps']:,}"),
        Row("cost", "with correlation, median ev/s", f"{cost['correlating_median_eps']:,}"),
        Row(
            "cost",
            "correlating / skeleton",
            f"{cost['ratio_pct']:.1f} %",
            COST,
            cost["ratio_pct"],
        ),
        Row(
            "cost",
            "correlation step alone, ev/s (/ skeleton)",
            f"{cost['correlation_step_eps']:,} ({cost['correlation_step_ratio_pct']:.0f} %)",
        ),
    ]
