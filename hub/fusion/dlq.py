"""Dead letters: invalid messages go to ``hub.events.dlq`` with their original bytes and headers
naming the reason. Delivery is flushed before the batch's offsets are committed, so a dead
letter is never lost (at-least-once: the source topic/partition/offset headers let a reader
drop a repeat after a crash)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

REASON = "hub-dlq-reason"
DETAIL = "hub-dlq-detail"


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def send(self, record: Any, reason: str, detail: str) -> None:
        headers = [
            *list(record.headers or []),
            (REASON, reason.encode()),
            (DETAIL, detail.encode()[:1000]),
            ("hub-source-topic", record.topic.encode()),
            ("hub-source-partition", str(record.partition).encode()),
            ("hub-source-offset", str(record.offset).encode()),
        ]
        self.producer.send(self.topic, key=record.key, value=record.value, headers=headers)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()
