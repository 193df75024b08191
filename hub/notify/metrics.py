"""Prometheus metrics of the notifier (served on ``settings.notify_metrics_port``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class NotifyMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.attempts = Counter(
            "hub_webhook_attempts",
            "Delivery attempts by outcome (delivered, failed, refused)",
            ["outcome"],
            registry=r,
        )
        self.seconds = Histogram(
            "hub_webhook_attempt_seconds",
            "Time of one delivery attempt (the receiver's answer)",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "hub_webhook_lag_seconds",
            "From the change's commit to its delivery",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.disabled = Counter(
            "hub_webhook_disabled", "Subscriptions disabled", ["reason"], registry=r
        )
        self.active = Gauge("hub_webhook_subscriptions", "Active subscriptions", registry=r)
        self.in_flight = Gauge(
            "hub_webhook_in_flight", "Subscriptions with a delivery under way", registry=r
        )
