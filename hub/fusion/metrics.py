"""Prometheus metrics of the fusion worker (served on ``settings.fusion_metrics_port``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class FusionMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("hub_fusion_events_consumed", "Messages consumed", registry=r)
        self.stored = Counter("hub_fusion_events_stored", "Events newly stored", registry=r)
        self.duplicates = Counter("hub_fusion_events_duplicate", "Duplicates dropped", registry=r)
        self.dlq = Counter("hub_fusion_events_dlq", "Dead letters", ["reason"], registry=r)
        self.snapped = Counter(
            "hub_fusion_events_snapped",
            "Events outside every community placed in the nearest (HUB_COMMUNITY_SNAP_M)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "hub_fusion_batch_seconds", "Batch processing time (decode to commit)", registry=r
        )
        self.step_seconds = Histogram(
            "hub_fusion_step_seconds",
            "Time of one step of a batch's transaction: insert, each stage of the picture, commit",
            ["step"],
            registry=r,
        )
        self.batch_size = Histogram(
            "hub_fusion_batch_size",
            "Messages per batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
            registry=r,
        )
        self.ingest_lag = Histogram(
            "hub_fusion_ingest_lag_seconds",
            "Producer send to PostgreSQL commit",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "hub_fusion_consumer_lag", "Messages behind the log end", ["partition"], registry=r
        )
        self.topic_resets = Counter(
            "hub_fusion_topic_resets", "Partitions restarted from the beginning", registry=r
        )
