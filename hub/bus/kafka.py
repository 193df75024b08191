"""Producer/consumer/admin factories and topic management, configured from settings.

The producer needs only :class:`EventLog` (the hub's Settings and a connector's settings both
fit it), so connectors use it without the hub's settings.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from hub.settings import Settings

log = logging.getLogger(__name__)


class EventLog(Protocol):
    """Where events are produced: the broker's bootstrap servers and the events topic."""

    @property
    def kafka_bootstrap(self) -> str: ...

    @property
    def events_topic(self) -> str: ...


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="hub-admin")


def ensure_topics(settings: Settings) -> dict[str, str | None]:
    """Create the events and DLQ topics when missing; returns {topic: topic_id}."""
    client = admin(settings)
    try:
        wanted = [settings.events_topic, settings.dlq_topic]
        existing = set(client.list_topics())
        new = [NewTopic(t, settings.topic_partitions, 1) for t in wanted if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                client.create_topics(new)
        return {d["name"]: d.get("topic_id") for d in client.describe_topics(wanted)}
    finally:
        client.close()


def topic_id(settings: Settings, topic: str) -> str | None:
    client = admin(settings)
    try:
        described = client.describe_topics([topic])
        return described[0].get("topic_id") if described else None
    finally:
        client.close()


def producer(settings: EventLog, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "retries": 10,
        "compression_type": None,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,  # offsets live in PostgreSQL, committed with the data
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.fusion_max_poll_records,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": 16 * 1024 * 1024,
        "session_timeout_ms": settings.fusion_session_timeout_ms,
        "heartbeat_interval_ms": max(settings.fusion_session_timeout_ms // 5, 500),
        "max_poll_interval_ms": settings.fusion_max_poll_interval_ms,
    }
    config.update(overrides)
    return KafkaConsumer(**config)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Log end offset of every partition of ``topic`` (without joining a group)."""
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = c.partitions_for_topic(topic) or set()
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        c.close()


def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    """Block until the broker answers metadata requests."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin(settings).close()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"Kafka broker at {settings.kafka_bootstrap} not reachable: {last}")
