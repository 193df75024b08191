"""The hub's correlation model in this process: no broker, no database, the same incidents
(the pipeline's are what ``reference.cluster`` gives on all reports at once). For tuning the
model quickly: ``in_process_rows()`` or ``hub bench fusion --in-process``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from hub.bench.fusion_quality.generator import GeneratedReport
from hub.bench.fusion_quality.scoring import Claimed
from hub.bench.fusion_quality.variants import select, sweep
from hub.fusion.incident.ids import source_key
from hub.fusion.incident.links import report_frame
from hub.fusion.incident.model import Report
from hub.fusion.incident.reference import cluster
from hub.fusion.incident.summaries import summarise
from hub.fusion.rules import Rules


def as_report(generated: GeneratedReport) -> Report:
    """The report as fusion reads it from its event: its source's key as fusion computes it
    (``ids.source_key`` of reporter, system and the event's community), its picture,
    severity and certainty."""
    event = orjson.loads(generated.event)
    source = event["source"]
    community = event.get("community_id")
    lon, lat = event["geometry"]["coordinates"]
    return Report(
        event_id=uuid.UUID(event["event_id"]),
        event_type=event["event_type"],
        status=event["status"],
        observed_at=datetime.fromisoformat(event["observed_at"]),
        lon=lon,
        lat=lat,
        community_id=community,
        source_key=source_key(source.get("reporter"), source["system"], community),
        severity=event["severity"],
        certainty=event["certainty"],
    )


def hub_clusterer(reports: Sequence[GeneratedReport]) -> Claimed:
    """report_id -> incident id, by ``reference.cluster`` with the shipped rules, with the
    incidents the hub calls corroborated (``summaries.summarise`` on them all)."""
    rules = Rules.load()
    found = cluster(hub_reports := [as_report(r) for r in reports], rules)
    labels = {str(event_id): str(incident) for event_id, incident in found.items()}
    frame = report_frame([r for r in hub_reports if r.event_id in found]).with_columns(
        pl.Series("incident", [str(found[r.event_id]) for r in hub_reports if r.event_id in found]),
        pl.lit(None, pl.String).alias("category"),
    )
    rows = summarise(frame, rules).filter(pl.col("verification") == "corroborated")
    return Claimed(labels, rows["incident"].to_list())


def in_process_rows(
    variants: Iterable[str] | None = None, incidents: int | None = None
) -> list[dict[str, Any]]:
    """Per variant (names as in ``VARIANTS``; None: all), the hub's model and the naive
    baseline scored on the same reports of each variant's first ``incidents`` (None: all):
    ``[{"variant", "method", "f1", "precision", "false_corroboration", ...}, ...]``."""
    return sweep(hub_clusterer, name="hub", incidents=incidents, variants=select(variants))
